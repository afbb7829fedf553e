"""A uniform random sample of a stream of unknown length, in constant memory.

Algorithm L (Li, 1994): after the reservoir fills, it draws how many items to
skip rather than a random number per item, so a million objects cost a million
integer comparisons and a few hundred draws.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Reservoir(Generic[T]):
    def __init__(self, size: int, seed: int):
        self.size = size
        self.seen = 0
        self.items: list[T] = []
        self._random = random.Random(seed)
        self._weight = 1.0
        if size > 0:
            # Items 0..size-1 fill the reservoir; the first replacement comes after.
            self._weight = self._shrink(1.0)
            self._next = size + self._skip()

    def offer(self, make: Callable[[], T]) -> None:
        """Count one item; ``make`` builds it only if it enters the sample."""
        slot = self.take()
        if slot is not None:
            self.put(slot, make())

    def take(self) -> int | None:
        """Count one item; the slot it goes to if it enters the sample, else None.

        The caller builds the item only when it gets a slot, and ``put``s it there.
        """
        index = self.seen
        self.seen += 1
        if index < self.size:
            return index
        if self.size and index == self._next:
            self._weight = self._shrink(self._weight)
            self._next = index + 1 + self._skip()
            return self._random.randrange(self.size)
        return None

    def put(self, slot: int, item: T) -> None:
        if slot == len(self.items):
            self.items.append(item)
        else:
            self.items[slot] = item

    def _shrink(self, weight: float) -> float:
        return weight * math.exp(math.log(self._uniform()) / self.size)

    def _skip(self) -> int:
        if self._weight >= 1.0:
            return 0
        return math.floor(math.log(self._uniform()) / math.log1p(-self._weight))

    def _uniform(self) -> float:
        # random() may return 0.0, whose log is undefined.
        return self._random.random() or 1e-300
