"""A small thread pool with a bounded number of requests in flight.

Results are handed to ``handle`` on the submitting thread, in submission order,
so whatever consumes them (the recorder, the confirmer) needs no locks; a full
window makes the submitter wait, which is what bounds memory in deep mode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

R = TypeVar("R")


class BoundedPool(Generic[R]):
    def __init__(self, workers: int, handle: Callable[[R], None],
                 window: int | None = None):
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="reconcile-head")
        self._handle = handle
        self._window = window or workers * 4
        self._pending: deque[Future[R]] = deque()

    def submit(self, fn: Callable[..., R], *args: Any) -> None:
        self._pending.append(self._executor.submit(fn, *args))
        while self._pending and (self._pending[0].done()
                                 or len(self._pending) > self._window):
            self._handle(self._pending.popleft().result())

    def map(self, fn: Callable[..., R], items: list[Any]) -> list[R]:
        """Run ``fn`` over ``items`` concurrently and return the results in order."""
        return list(self._executor.map(fn, items))

    def drain(self) -> None:
        while self._pending:
            self._handle(self._pending.popleft().result())

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
