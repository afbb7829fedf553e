"""What every section shares: results, the run's context, timers and CPU meters.

A section is a module with ``NAME``, ``TITLE`` and ``run(ctx) -> list[Result]``;
``bench.sections.SECTIONS`` lists them in the order they run. A result carries its
own reference (the floor it is compared with) and, where the issue sets one, its
goal and whether it was met, so the report needs no knowledge of any section.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.inputs import InputSet

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """One figure: a median over ``runs``, with its reference and goal if any."""

    section: str
    key: str  # stable id, e.g. "e2e.pdf_small.files_per_s"
    label: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    reference: float | None = None
    reference_label: str | None = None
    ratio: float | None = None  # value / reference, when they are comparable
    goal: str | None = None
    met: bool | None = None
    note: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # kept in the JSON only

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """The run: where to work, how many repeats, the inputs and shared services."""

    work: Path
    inputs: InputSet
    runs: int
    quick: bool
    results: list[Result] = field(default_factory=list)
    cleanup: ExitStack = field(default_factory=ExitStack)
    # Measurements one section takes for another (e2e interleaves the floor runs).
    shared: dict[str, Any] = field(default_factory=dict)
    _stack: Any = None

    def stack(self) -> Any:
        """The services (moto, Postgres, Redis), started on first use and kept."""
        if self._stack is None:
            from bench.stack import BenchStack

            self._stack = BenchStack(self.work / "stack")
            self.cleanup.callback(self._stack.close)
        return self._stack

    def find(self, key: str) -> Result | None:
        return next((result for result in self.results if result.key == key), None)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def time_call(function: Callable[[], Any], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` calls, each timed alone."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        queue.extend(int(child) for child in children)
    return found


def command_name(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw if part)


class CpuMeter:
    """CPU used by named groups of processes between ``start`` and ``stop``.

    Groups are re-resolved at both ends (a worker's children may change); a
    process that ended in between is counted from its last reading as zero, which
    only happens when a reader process is replaced.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self.seconds: dict[str, float] = {}

    def _read(self) -> dict[str, dict[int, float]]:
        return {name: {pid: process_cpu_seconds(pid) for pid in pids()}
                for name, pids in self.groups.items()}

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.seconds = {
            name: sum(cpu - self._before.get(name, {}).get(pid, 0.0)
                      for pid, cpu in after[name].items())
            for name in self.groups
        }
        return self.seconds


def redis_pid() -> int | None:
    import redis

    try:
        return int(redis.Redis(host="127.0.0.1", port=6379).info("server")["process_id"])
    except Exception:  # noqa: BLE001 - without it the breakdown just lacks Redis
        return None
