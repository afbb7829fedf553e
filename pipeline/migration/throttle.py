"""The bound on documents in flight: spool no more until the workers catch up.

Every document of the run that is not final holds a spooled file and a queued
message. The count is asked of the database only when the local estimate
(last count plus documents spooled since) reaches the limit, so a migration
that the workers keep up with costs one query per ``limit`` documents.

The wait for room ends at ``deadline`` (``time.monotonic()``), if one is given,
with ``OutOfTime``: ``--timeout`` bounds the whole command, not only its last wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_SECONDS = 0.2


class OutOfTime(Exception):
    """The deadline passed while waiting for room; spool nothing more this pass."""


class InFlightLimit:
    def __init__(self, limit: int, count_unfinished: Callable[[], int],
                 on_wait: Callable[[int], None] = lambda _: None,
                 deadline: float | None = None, in_flight: int = 0):
        self.limit = limit
        self.count_unfinished = count_unfinished
        self.on_wait = on_wait
        self.deadline = deadline
        # Documents a pass before left unfinished count from the start.
        self._estimate = in_flight

    def wait_for_room(self) -> None:
        """Return when one more document may be spooled; raise ``OutOfTime`` when
        the deadline passes first."""
        if self._estimate < self.limit:
            return
        while True:
            self._estimate = self.count_unfinished()
            if self._estimate < self.limit:
                return
            self.on_wait(self._estimate)
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise OutOfTime(f"{self._estimate} documents in flight at the deadline")
            time.sleep(POLL_SECONDS)

    def taken(self) -> None:
        self._estimate += 1
