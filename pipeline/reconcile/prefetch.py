"""Reading a stream of batches ahead, on a thread, a bounded number at a time.

The listing waits on the bucket for each page; reading ahead lets that wait
overlap the merge's own work. The bound keeps memory at a few batches whatever
the size of the stream.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")

PREFETCH_BATCHES = 4
# A reader that stops early waits this long for the thread to finish its batch.
JOIN_SECONDS = 30.0
_DONE = object()


def prefetch(batches: Iterator[T], depth: int = PREFETCH_BATCHES,
             name: str = "reconcile-prefetch") -> Iterator[T]:
    """Run ``batches`` on a thread, at most ``depth`` batches ahead of the reader.

    An error on the thread is raised in the reader; a reader that stops early
    stops the thread too.
    """
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if not _put(ahead, batch, stop):
                    return
            _put(ahead, _DONE, stop)
        except BaseException as error:  # noqa: BLE001 - handed to the reader
            _put(ahead, error, stop)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (batch := ahead.get()) is not _DONE:
            if isinstance(batch, BaseException):
                raise batch
            yield batch
    finally:
        stop.set()
        thread.join(JOIN_SECONDS)


def _put(ahead: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            ahead.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


