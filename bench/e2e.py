"""Section ``e2e``: files/s through the real path, per kind of file.

The path: ``sluice ingest``'s intake (copy into the spool, a ``received`` row)
-> Redis -> a real ``sluice worker -c 2`` subprocess (Celery prefork, each child
with its sandbox reader) -> S3 on a moto server -> PostgreSQL. All files of a
kind are taken in first; the clock runs from the first enqueue to the moment
the last document became final (its ``updated_at``).

Runs are interleaved with the in-process floor (``bench.floor``) so that the
ratio of the two compares measurements taken side by side.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench import floor
from bench.core import (
    Context,
    CpuMeter,
    Result,
    descendants,
    machine_busy_seconds,
    median,
    redis_pid,
)
from bench.inputs import KINDS

NAME = "e2e"
TITLE = "End to end through Celery, 2 worker processes"
GOALS = {"pdf_small": 45.0, "jpeg_2mp": 27.0, "jpeg_24mp": 11.0}
TIMEOUT_SECONDS = 300.0


def _meter(ctx: Context) -> CpuMeter:
    stack = ctx.stack()
    worker = stack.worker.pid

    def children() -> list[int]:
        return [pid for pid in descendants(worker) if pid != worker]

    def pool() -> list[int]:
        below = children()
        return [pid for pid in below if _parent(pid) == worker]

    def sandboxes() -> list[int]:
        return [pid for pid in children() if _parent(pid) != worker]

    redis = redis_pid()
    return CpuMeter({
        "celery main": lambda: [worker], "celery children": pool, "sandboxes": sandboxes,
        "moto": lambda: [stack.moto.pid], "postgres": stack.backend_pids,
        "redis": lambda: [redis] if redis else [], "bench": lambda: [os.getpid()],
    })


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return -1


def measure_kind(ctx: Context, kind: str) -> dict:
    """One run: every file of ``kind`` through the worker; files/s and CPU per file."""
    stack = ctx.stack()
    files = ctx.inputs.files[kind]
    stack.reset()
    handed = stack.intake(files)

    meter = _meter(ctx)
    meter.start()
    busy_before, wall_before = machine_busy_seconds(), time.monotonic()
    start = time.time()
    stack.enqueue(handed)
    last = stack.wait_final(len(handed), TIMEOUT_SECONDS)
    cpu = meter.stop()
    window = time.monotonic() - wall_before
    machine = machine_busy_seconds() - busy_before

    statuses = stack.statuses()
    if statuses != {"stored": len(handed)}:
        raise RuntimeError(f"e2e {kind}: expected every document stored, got {statuses}; "
                           f"see {stack.worker_log}")
    ours = sum(cpu.values())
    foreign = max(0.0, machine - ours)
    count = len(handed)
    return {
        "files_per_s": count / (last - start),
        "cpu_ms": {name: seconds * 1000 / count for name, seconds in cpu.items()},
        "available_cores": max(0.1, os.cpu_count() - foreign / window),
    }


def _warm_up(ctx: Context) -> None:
    # Each pool child starts its sandbox and clients on its first file; that
    # one-off cost is not throughput.
    stack = ctx.stack()
    stack.reset()
    handed = stack.intake(path for kind in KINDS for path in ctx.inputs.files[kind.name][:2])
    stack.enqueue(handed)
    stack.wait_final(len(handed), TIMEOUT_SECONDS)
    stack.reset()
    floor.pipeline(ctx).process(ctx.inputs.files[KINDS[0].name][0])


def run(ctx: Context) -> list[Result]:
    stack = ctx.stack()
    if stack.worker is None:
        stack.start_worker(concurrency=2)
    _warm_up(ctx)

    runs: dict[str, list[dict]] = {kind.name: [] for kind in KINDS}
    for _ in range(ctx.runs):
        for kind in KINDS:
            runs[kind.name].append(measure_kind(ctx, kind.name))
            floor.measure_kind(ctx, kind.name)
    stack.reset()
    return [_result(kind.name, kind.label, runs[kind.name], len(ctx.inputs.files[kind.name]))
            for kind in KINDS]


def _result(kind: str, label: str, runs: list[dict], count: int) -> Result:
    rate = median(run["files_per_s"] for run in runs)
    cpu = {name: median(run["cpu_ms"][name] for run in runs) for name in runs[0]["cpu_ms"]}
    goal = GOALS.get(kind)
    available = median(run["available_cores"] for run in runs)
    return Result(
        NAME, f"e2e.{kind}.files_per_s", f"{label}: end to end ({count} files)", rate,
        "files/s", runs=[run["files_per_s"] for run in runs],
        goal=f"≥ {goal:g}" if goal else None, met=rate >= goal if goal else None,
        note=f"{available:.2f} of 2 cores free of other jobs; CPU-bound ceiling on 2 "
             f"free cores {2000 / sum(cpu.values()):.0f} files/s; CPU ms/file: "
             + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items() if ms >= 0.05),
        detail={"cpu_ms_per_file": cpu, "available_cores": available},
    )
