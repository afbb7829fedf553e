"""Whether a process of this host is still running, as far as /proc can tell."""

from __future__ import annotations

import os
from pathlib import Path

# In /proc/PID/stat after the command name, the state is field 0 and the start
# time (field 22 of proc(5)) is field 19.
_STATE, _START = 0, 19


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    fields = _proc_stat(pid)
    return int(fields[_START]) if fields and len(fields) > _START else None


def is_running(pid: int, started: int | None = None) -> bool:
    """False for a pid that is gone, a zombie, or (when ``started`` was recorded) a new
    process that reused the pid.

    ``os.kill(pid, 0)`` alone is not enough: it succeeds on a zombie, a process
    that died and was not yet reaped by its parent.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: the signal is all there is to go by
    if fields[_STATE] in ("Z", "X"):
        return False
    return started is None or len(fields) <= _START or int(fields[_START]) == started


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name in parentheses may itself hold spaces and parentheses.
    return text[text.rindex(")") + 2:].split()


def lease_holder_pid(owner: str, host: str) -> int | None:
    """The pid in a lease owner ``...@host:pid`` of ``host``; None if it is not one."""
    _, _, worker = owner.rpartition("@")
    name, _, pid = worker.rpartition(":")
    return int(pid) if name == host and pid.isdigit() else None
