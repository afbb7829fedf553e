"""Whether a process of this host is still running, as far as /proc can tell."""

from __future__ import annotations

import os
from pathlib import Path


def is_running(pid: int) -> bool:
    """False for a pid that is gone or a zombie (dead, not yet reaped by its parent).

    ``os.kill(pid, 0)`` is not enough: it succeeds on a zombie. A pid reused by an
    unrelated process reads as running, which errs on the safe side for callers
    that only act on a dead process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signal_probe(pid)
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _signal_probe(pid: int) -> bool:
    # Without /proc (not Linux), the signal probe is the best there is.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
