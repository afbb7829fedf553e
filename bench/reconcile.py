"""Section ``reconcile``: reconciling a million rows against a million objects.

A thin runner over ``bench.reconcile_million`` (which also runs alone). The
documents table is real (a scratch PostgreSQL database filled by COPY); the
bucket is the stand-in S3 server of ``bench/s3_standin.py`` (ListObjectsV2 and
HEAD from sorted key files, 0 ms a page), because moto cannot hold a million
objects. Listing, scanning and reconciling each run in a fresh process (their
peak RSS is their own), interleaved. Goals (issue 4): reconcile time at most
1.2 × (list time + scan time); peak RSS of the reconcile process at most 150 MB.
"""

from __future__ import annotations

from typing import Any

from bench import reconcile_million as million
from bench.core import Context, Result

NAME = "reconcile"
TITLE = "Reconciliation, 1,000,000 rows against 1,000,000 objects (stand-in S3 lister)"
ROWS = 1_000_000
QUICK_ROWS = 50_000
REPEATS = 1  # a million-row round is ~1 min; more do not fit in ten minutes


def run(ctx: Context) -> list[Result]:
    rows = ctx.options.get("reconcile_rows") or (QUICK_ROWS if ctx.quick else ROWS)
    repeats = 1 if ctx.quick else min(ctx.runs, ctx.options.get("reconcile_repeats")
                                      or REPEATS)
    # The merge-alone diagnostic (~20 s) is left to the standalone command.
    found = million.orchestrate(rows, repeats, merge=False)
    phases = found["phases"]
    size = f"{found['rows']:,} rows, {found['objects']:,} objects"
    listing, scanning = phases["list"], phases["scan"]
    reconciling = phases["reconcile"]
    planted = ("findings as planted" if found["findings_as_planted"]
               else f"findings {found['findings']} DIFFER from {found['expected_findings']}")
    merge = ("" if found["merge_cpu_seconds"] is None else
             f"; the merge alone (both sides in memory) {found['merge_cpu_seconds']:.1f} s CPU")
    results = [
        Result(NAME, "reconcile.list_seconds", f"list {found['objects']:,} objects",
               found["list_seconds"], "s", runs=listing["runs"], note=_cpu(listing)),
        Result(NAME, "reconcile.scan_seconds", f"scan {found['rows']:,} rows",
               found["scan_seconds"], "s", runs=scanning["runs"], note=_cpu(scanning)),
        Result(NAME, "reconcile.seconds", f"reconcile ({size})", found["reconcile_seconds"],
               "s", runs=reconciling["runs"],
               reference=found["list_seconds"] + found["scan_seconds"],
               reference_label="list + scan", ratio=found["ratio"],
               goal=f"≤ {million.RATIO_GOAL:g} × reference",
               met=found["ratio"] <= million.RATIO_GOAL,
               note=f"{_cpu(reconciling)}{merge}; {found['inspected']} objects inspected "
                    f"(sample); {planted}",
               detail=found),
        Result(NAME, "reconcile.peak_rss", "peak RSS of reconcile", found["peak_rss_mb"],
               "MB", goal=f"≤ {million.RSS_GOAL_MB:g} MB",
               met=found["peak_rss_mb"] <= million.RSS_GOAL_MB,
               note=f"largest of {repeats} run(s); list alone {listing['peak_rss_mb']:.0f} MB, "
                    f"scan alone {scanning['peak_rss_mb']:.0f} MB"),
    ]
    if not found["findings_as_planted"]:
        raise RuntimeError(f"reconcile: {planted}")
    return results


def _cpu(phase: dict[str, Any]) -> str:
    return (f"{phase['free_cores']:.2f} of 2 cores free of other jobs; CPU s: this process "
            f"{phase['process_cpu']:.1f} (measured part {phase['cpu']:.1f}), stand-in S3 "
            f"{phase['server_cpu']:.1f}, postgres {phase['postgres_cpu']:.1f}")
