"""Deliberate crashes at named points, so tests can kill a worker mid-step for real.

Off unless ``SLUICE_FAILPOINTS`` names points (comma-separated). A named point
kills its own process with SIGKILL the first time any process reaches it (a
marker file in ``$SLUICE_VAR_DIR/failpoints`` remembers that it fired), exactly
as the OOM killer or a pulled plug would.
"""

from __future__ import annotations

import logging
import os
import signal

from pipeline.settings import Settings

log = logging.getLogger(__name__)


def reach(settings: Settings, point: str) -> None:
    if point not in settings.failpoints:
        return
    markers = settings.var_dir / "failpoints"
    markers.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(markers / point, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(descriptor)
    log.warning("failpoint fired point=%s pid=%d", point, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
