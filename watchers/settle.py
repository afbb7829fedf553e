"""Deciding when a file in the inbox is completely written.

A file is taken once its size and mtime have not changed for the settle
interval. A zero-length file is a scanner that has created its output and not
written yet, so it must stay empty far longer before it counts as a file.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Candidate:
    size: int
    mtime_ns: int
    unchanged_since: float  # monotonic seconds


class SettleTracker:
    def __init__(self, settle_seconds: float, empty_settle_seconds: float):
        self.settle_seconds = settle_seconds
        self.empty_settle_seconds = empty_settle_seconds
        self._candidates: dict[Path, Candidate] = {}

    def __len__(self) -> int:
        return len(self._candidates)

    def observe(self, path: Path) -> None:
        """Note a file seen by an event or a scan."""
        status = _stat_regular(path)
        if status is None:
            self._candidates.pop(path, None)
            return
        now = time.monotonic()
        known = self._candidates.get(path)
        if known is None:
            since = now
            # Already untouched for longer than the interval: nobody is writing it
            # (files found by a startup scan need not wait again).
            age = time.time() - status.st_mtime
            if status.st_size > 0 and age >= self.settle_seconds:
                since = now - age
            self._candidates[path] = Candidate(status.st_size, status.st_mtime_ns, since)
        elif (known.size, known.mtime_ns) != (status.st_size, status.st_mtime_ns):
            self._candidates[path] = Candidate(status.st_size, status.st_mtime_ns, now)

    def forget(self, path: Path) -> None:
        self._candidates.pop(path, None)

    def settled(self) -> list[Path]:
        """Files that have stopped changing, oldest first; re-checks every candidate."""
        now = time.monotonic()
        ready = []
        for path in list(self._candidates):
            self.observe(path)
            candidate = self._candidates.get(path)
            if candidate is None:
                continue
            wait = self.empty_settle_seconds if candidate.size == 0 else self.settle_seconds
            if now - candidate.unchanged_since >= wait:
                ready.append((candidate.unchanged_since, path))
        return [path for _, path in sorted(ready)]


def _stat_regular(path: Path) -> os.stat_result | None:
    # lstat: a symlink in the inbox could point anywhere on the host (/etc/…), so
    # only regular files are ever taken.
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return status if stat.S_ISREG(status.st_mode) else None
