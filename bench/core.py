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


# What a sleeping thread waits for, from the kernel function it sleeps in (wchan).
WAIT_KINDS = (
    ("sleep", ("nanosleep",)),
    ("pipe", ("pipe_read", "pipe_wait", "pipe_write")),
    ("lock", ("futex",)),
    ("poll", ("poll", "select", "epoll")),
    ("socket", ("sk_wait", "wait_woken", "unix_stream", "tcp_", "inet_")),
    ("disk", ("folio_wait", "bio", "sync", "jbd2", "io_schedule", "writeback")),
)


def wait_kind(wchan: str) -> str:
    for kind, needles in WAIT_KINDS:
        if any(needle in wchan for needle in needles):
            return kind
    return "other"


class StateProfile:
    """Where the wall time of named groups of processes goes, main thread by main thread.

    Every ``interval`` seconds a thread reads each process's ``/proc/PID/schedstat``
    (nanoseconds on a CPU and runnable but waiting for one: exact) and, when the
    process is not running, the kernel function it sleeps in (``wchan``: sampled).
    ``stop`` returns, per group, the share of its processes' time in the window on
    a CPU ("cpu"), waiting for a core ("run queue") and blocked, the blocked time
    split by what the samples found it waiting for (``WAIT_KINDS``).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.02):
        self.groups = groups
        self.interval = interval
        # (group, pid) -> [first time, first run ns, first wait ns, last time, run, wait]
        self._seen: dict[tuple[str, int], list[float]] = {}
        self._blocked: dict[str, dict[str, int]] = {name: {} for name in groups}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> None:
        now = time.monotonic()
        for name, pids in self.groups.items():
            try:
                found = pids()
            except Exception:  # noqa: BLE001 - read again on the next round
                continue
            for pid in found:
                try:
                    run_ns, wait_ns = (int(value) for value in Path(
                        f"/proc/{pid}/schedstat").read_text().split()[:2])
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    wchan = Path(f"/proc/{pid}/wchan").read_text() if state != "R" else ""
                except (OSError, ValueError):
                    continue
                seen = self._seen.setdefault((name, pid), [now, run_ns, wait_ns, now, 0, 0])
                seen[3:] = [now, run_ns, wait_ns]
                if state != "R":
                    kind = wait_kind(wchan)
                    self._blocked[name][kind] = self._blocked[name].get(kind, 0) + 1

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            self._read()

    def start(self) -> None:
        self._read()
        self._thread.start()

    def stop(self) -> dict[str, dict[str, float]]:
        self._done.set()
        self._thread.join()
        shares: dict[str, dict[str, float]] = {}
        for name in self.groups:
            lived = on_cpu = queued = 0.0
            for (group, _), (first, run0, wait0, last, run1, wait1) in self._seen.items():
                if group == name and last > first:
                    lived += last - first
                    on_cpu += (run1 - run0) / 1e9
                    queued += (wait1 - wait0) / 1e9
            if lived <= 0:
                continue
            found = {"cpu": min(1.0, on_cpu / lived), "run queue": min(1.0, queued / lived)}
            blocked = max(0.0, 1.0 - found["cpu"] - found["run queue"])
            samples = sum(self._blocked[name].values())
            for kind, count in sorted(self._blocked[name].items(), key=lambda kv: -kv[1]):
                found[kind] = blocked * count / samples
            shares[name] = found
        return shares


def states_note(shares: dict[str, dict[str, float]], least: float = 0.03) -> str:
    """``name: cpu 40%, sleep 30%, ...`` per group, leaving out shares under ``least``."""
    return "; ".join(
        f"{name} " + ", ".join(f"{state} {share:.0%}" for state, share in states.items()
                               if share >= least)
        for name, states in shares.items())


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
