"""What every section shares: results, the run's context, timers and CPU meters.

A section is a module with ``NAME``, ``TITLE`` and ``run(ctx) -> list[Result]``;
``bench.sections.SECTIONS`` lists them in the order they run. A result carries its
own reference (the floor it is compared with) and, where the issue sets one, its
goal and whether it was met, so the report needs no knowledge of any section.
"""

from __future__ import annotations

import os
import statistics
import threading
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
    # Sizes set on the command line (``--migrate-files`` and the like); a section
    # reads its own and falls back to its default.
    options: dict[str, Any] = field(default_factory=dict)
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


def parent_pid(pid: int) -> int:
    """The parent of ``pid``; -1 when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return -1


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


class CpuSampler:
    """CPU of named groups of processes over a window, counting processes that end in it.

    ``CpuMeter`` reads at both ends only, so a process that exits inside the window
    (a ``sluice migrate`` run, the PostgreSQL backend of its connection) would count
    as nothing. This one re-resolves the groups every ``interval`` seconds on a
    thread: a process present at the start counts from its reading then, one that
    appears later from zero (it started inside the window), and one that ends up
    to its last reading, so at most ``interval`` of its CPU is missed.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.1):
        self.groups = groups
        self.interval = interval
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._started = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.seconds: dict[str, float] = {}

    def _read(self) -> None:
        for name, pids in self.groups.items():
            try:
                found = pids()
            except Exception:  # noqa: BLE001 - a group that cannot be read now is read later
                continue
            for pid in found:
                cpu = process_cpu_seconds(pid)
                if cpu <= 0.0 and (name, pid) in self._last:
                    continue  # gone since it was listed: keep its last reading
                if (name, pid) not in self._first:
                    self._first[(name, pid)] = cpu if not self._started else 0.0
                self._last[(name, pid)] = cpu

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            self._read()

    def start(self) -> None:
        self._read()
        self._started = True
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._done.set()
        self._thread.join()
        self._read()
        self.seconds = dict.fromkeys(self.groups, 0.0)
        for (name, pid), cpu in self._last.items():
            self.seconds[name] += max(0.0, cpu - self._first[(name, pid)])
        return self.seconds


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0]
              .split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    # Interrupt time is left out: on loopback it is mostly our own traffic.
    return (user + nice + system + steal) / CLOCK_TICKS


def free_cores(machine_busy: float, ours: float, window: float) -> float:
    """Cores left to the benchmark: all of them minus what other jobs used in ``window``."""
    foreign = max(0.0, machine_busy - ours)
    return max(0.1, (os.cpu_count() or 1) - foreign / window) if window > 0 else 0.1


def pg_backend_pids(admin_url: str, database: str) -> Callable[[], list[int]]:
    """A group for the meters: the PostgreSQL processes serving ``database`` now."""
    import psycopg

    connection = psycopg.connect(admin_url, autocommit=True)
    lock = threading.Lock()

    def pids() -> list[int]:
        with lock:
            if connection.closed:
                return []
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()", (database,)).fetchall()
        return [row[0] for row in rows]

    def close() -> None:
        with lock:
            connection.close()

    pids.close = close  # type: ignore[attr-defined]
    return pids


def cpu_note(cpu_ms: dict[str, float]) -> str:
    return "CPU ms/file: " + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu_ms.items()
                                       if ms >= 0.05)


def redis_pid() -> int | None:
    import redis

    try:
        return int(redis.Redis(host="127.0.0.1", port=6379).info("server")["process_id"])
    except Exception:  # noqa: BLE001 - without it the breakdown just lacks Redis
        return None
