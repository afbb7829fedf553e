"""Progress of a migration: one line redrawn on a terminal, log lines otherwise.

    1,234 files  56.7 MB  45.2 files/s  41%  ETA 2m10s  refused 3  failed 1

Log lines from elsewhere (refusals) would land in the middle of the redrawn
line, so while it is shown a logging filter clears the line before each record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

log = logging.getLogger(__name__)

REDRAW_SECONDS = 0.2
LOG_EVERY_SECONDS = 10.0


class Progress:
    def __init__(self, stream: TextIO, on_terminal: bool,
                 fraction: Callable[[], float | None] = lambda: None):
        self.stream = stream
        self.on_terminal = on_terminal
        self.fraction = fraction
        self.files = self.bytes = self.refused = self.skipped = self.failed = 0
        self.in_flight: int | None = None
        self.waiting = False
        self._started = time.monotonic()
        self._shown_at = 0.0
        self._drawn = False
        self._filter = _ClearLine(self)

    def __enter__(self) -> Progress:
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._filter)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.show(force=True)
        self.clear()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)

    def taken(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        self.show()

    def counted(self, refused: int = 0, skipped: int = 0) -> None:
        self.refused += refused
        self.skipped += skipped
        self.show()

    def update(self, in_flight: int | None = None, failed: int | None = None,
               waiting: bool = False) -> None:
        self.in_flight = in_flight if in_flight is not None else self.in_flight
        self.failed = failed if failed is not None else self.failed
        self.waiting = waiting
        self.show()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        every = REDRAW_SECONDS if self.on_terminal else LOG_EVERY_SECONDS
        if not force and now - self._shown_at < every:
            return
        self._shown_at = now
        if self.on_terminal:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
            self._drawn = True
        else:
            log.info("migration progress %s", self.line())

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def line(self) -> str:
        rate = self.files / self.elapsed if self.elapsed > 0 else 0.0
        parts = [f"{self.files:,} files", _size(self.bytes), f"{rate:.1f} files/s"]
        fraction = None if self.waiting else self.fraction()
        if fraction:
            fraction = min(fraction, 0.999)
            eta = self.elapsed * (1 - fraction) / fraction
            parts += [f"{fraction:.0%}", f"ETA {_duration(eta)}"]
        if self.waiting:
            parts.append(f"waiting for the workers: {self.in_flight or 0} in flight")
        parts += [f"refused {self.refused}", f"failed {self.failed}"]
        return "  ".join(parts)


class _ClearLine(logging.Filter):
    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        if self.progress.on_terminal:
            self.progress.clear()
        return True


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    size = count / 1000
    for unit in ("KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
