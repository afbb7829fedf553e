"""Children that stop when their parent dies, however it dies.

``sluice up`` stops its children in order when asked; but if ``up`` itself is
killed (SIGKILL, the OOM killer) it can ask nothing, and its worker, scheduler,
watcher and API would live on as orphans: the port stays taken, and a second
``up`` would run a second scheduler. Linux's PR_SET_PDEATHSIG has the kernel
send the child SIGTERM (a normal, graceful stop) when its parent goes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def stop_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties the child's life to ``parent_pid``; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def tie() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        # The parent may have died between fork and prctl: then nobody will
        # send the signal, so the child stops itself.
        if os.getppid() != parent_pid:
            os._exit(1)

    return tie
