"""Section ``floor``: the same files through the same steps in one process, and e2e ÷ floor.

Two ratios, side by side (PERFORMANCE.md gives the floor per process: 24 ms per
200 KB PDF, i.e. ~42 files/s for one process):

* ``W``: wall ms per file of the in-process pipeline (one file at a time).
* ``C``: CPU ms per file that this takes on the whole box: the bench process plus
  the moto server plus the Postgres backend. Here ``C`` ≈ ``W``: one file at a
  time keeps about one core busy.
* **end to end ÷ floor**, the issue's goal: the e2e rate (2 worker processes)
  divided by the floor's rate, ``1000 / W`` files/s: "the same steps for the same
  files called directly in one process with reused clients". PERFORMANCE.md's
  reference figures are read the same way (one process beside Celery with 2
  workers).
* **end to end ÷ floor on 2 cores**, stricter, with no goal of its own: the floor's
  rate times the parallelism the box could offer two such processes,
  ``p = min(workers, available_cores × W / C)``, where ``available_cores`` is 2
  minus the CPU that processes outside the benchmark took during the e2e run. It
  assumes two in-process pipelines would scale perfectly, even though they would
  share the one moto process and Postgres; what separates e2e from it is
  orchestration (Celery, Redis, the sandbox's IPC, leases, audit events) plus the
  idle time of two sequential chains of work on two cores.
"""

from __future__ import annotations

import time
from typing import Any

from bench.core import Context, CpuMeter, Result, median
from bench.inprocess import InProcess
from bench.inputs import KINDS

NAME = "floor"
TITLE = "In-process floor and end-to-end ÷ floor"
WORKERS = 2
RATIO_GOAL = 0.8


def pipeline(ctx: Context) -> InProcess:
    """The in-process pipeline, made once per run."""
    if "inprocess" not in ctx.shared:
        stack = ctx.stack()
        ctx.shared["inprocess"] = InProcess(stack.settings, stack.database_url)
        ctx.cleanup.callback(ctx.shared["inprocess"].close)
    return ctx.shared["inprocess"]


def measure_kind(ctx: Context, kind: str) -> dict[str, Any]:
    """One floor run over every file of ``kind``: wall and CPU ms per file."""
    stack, floor = ctx.stack(), pipeline(ctx)
    files = ctx.inputs.files[kind]
    stack.reset()
    meter = CpuMeter({"bench": lambda: [_self_pid()], "moto": lambda: [stack.moto.pid],
                      "postgres": lambda: [floor.pg_backend_pid()]})
    meter.start()
    start = time.perf_counter()
    for path in files:
        floor.process(path)
    wall = time.perf_counter() - start
    cpu = meter.stop()
    count = len(files)
    run = {"wall_ms": wall * 1000 / count,
           "cpu_ms": {name: seconds * 1000 / count for name, seconds in cpu.items()}}
    ctx.shared.setdefault("floor_runs", {}).setdefault(kind, []).append(run)
    return run


def _self_pid() -> int:
    import os

    return os.getpid()


def run(ctx: Context) -> list[Result]:
    runs_by_kind = ctx.shared.get("floor_runs") or {}
    if not runs_by_kind:
        pipeline(ctx).process(ctx.inputs.files[KINDS[0].name][0])  # warm the clients
        for _ in range(ctx.runs):
            for kind in KINDS:
                measure_kind(ctx, kind.name)
        runs_by_kind = ctx.shared["floor_runs"]

    results = []
    for kind in KINDS:
        runs = runs_by_kind.get(kind.name)
        if runs:
            results += _kind_results(ctx, kind.name, kind.label, runs)
    return results


def _kind_results(ctx: Context, kind: str, label: str, runs: list[dict]) -> list[Result]:
    wall = median(run["wall_ms"] for run in runs)
    cpu = {name: median(run["cpu_ms"][name] for run in runs) for name in runs[0]["cpu_ms"]}
    cpu_total = sum(cpu.values())
    results = [Result(
        NAME, f"floor.{kind}.ms_per_file", f"{label}: in-process, ms per file", wall, "ms",
        runs=[run["wall_ms"] for run in runs],
        note="CPU ms/file: " + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items()),
        detail={"cpu_ms_per_file": cpu},
    )]

    e2e = ctx.find(f"e2e.{kind}.files_per_s")
    if e2e is None:
        return results
    rate = 1000 / wall
    ratio = e2e.value / rate
    results.append(Result(
        NAME, f"floor.{kind}.e2e_ratio", f"{label}: end to end ÷ floor", ratio, "×",
        reference=rate, reference_label=f"floor {rate:.1f} files/s, one process",
        goal=f"≥ {RATIO_GOAL}", met=ratio >= RATIO_GOAL,
        note=f"e2e {e2e.value:.1f} files/s with {WORKERS} worker processes ÷ the "
             f"in-process floor's {rate:.1f} files/s (W {wall:.1f} ms per file)",
    ))

    available = e2e.detail.get("available_cores", 2.0)
    parallelism = min(WORKERS, available * wall / cpu_total) if cpu_total else WORKERS
    ideal = parallelism * rate
    strict = e2e.value / ideal
    results.append(Result(
        NAME, f"floor.{kind}.e2e_ratio_cores", f"{label}: end to end ÷ floor on 2 cores",
        strict, "×",
        reference=ideal, reference_label=f"floor {rate:.1f} files/s × p {parallelism:.2f}",
        note=f"stricter than the goal: p = min({WORKERS}, {available:.2f} cores × "
             f"W {wall:.1f} ms ÷ C {cpu_total:.1f} ms)",
        detail={"parallelism": parallelism, "ideal_files_per_s": ideal},
    ))
    return results
