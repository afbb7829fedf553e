"""Section ``upload``: the API during a large upload, next to ``cp`` of the same file.

A thin runner over ``bench.api_upload`` (which also runs alone): ``sluice serve``
on the embedded defaults takes a ``SIZE_MB`` text file from curl (multipart,
streamed from disk); ``cp`` (and ``cp`` + ``sync``, since the upload makes its
spool file durable before it answers) copies the same file, runs interleaved.
Goals: the API's peak RSS grows by at most 30 MB during the upload, and the
upload runs at no less than half ``cp``'s speed.
"""

from __future__ import annotations

from bench import api_upload
from bench.core import Context, Result

NAME = "upload"
TITLE = "HTTP API during a large upload (`sluice serve`)"
SIZE_MB = 500
QUICK_SIZE_MB = 50
RUNS = 3
SPEED_GOAL = 0.5  # × cp
GROWTH_GOAL_MB = 30.0


def run(ctx: Context) -> list[Result]:
    size_mb = ctx.options.get("upload_mb") or (QUICK_SIZE_MB if ctx.quick else SIZE_MB)
    runs = 1 if ctx.quick else min(ctx.runs, RUNS)
    found = api_upload.measure(size_mb, runs, root=ctx.work)
    size = f"{found['size_mb']:,.0f} MB"
    ratio = found["upload_mb_per_s"] / found["cp_mb_per_s"]
    speed = Result(
        NAME, "upload.mb_per_s", f"upload of {size} to sluice serve", found["upload_mb_per_s"],
        "MB/s", runs=found["runs"]["upload"], reference=found["cp_mb_per_s"],
        reference_label="cp of the same file", ratio=ratio,
        goal=f"≥ {SPEED_GOAL:g} × reference", met=ratio >= SPEED_GOAL,
        note=f"curl -F from the page cache, first byte to the 202 ({found['status']}), "
             f"{found['upload_seconds']:.2f} s, of it CPU: API {found['api_cpu_seconds']:.2f} s, "
             f"curl {found['curl_cpu_seconds']:.2f} s; cp {found['cp_seconds']:.2f} s, "
             f"cp + sync {found['cp_sync_mb_per_s']:.0f} MB/s, of which the upload is "
             f"{found['upload_mb_per_s'] / found['cp_sync_mb_per_s']:.2f} × (the upload syncs "
             f"its spool file before answering; cp alone neither syncs nor hashes); "
             f"median of {runs}",
        detail=found,
    )
    growth = Result(
        NAME, "upload.rss_growth", f"API peak RSS growth during the {size} upload",
        found["worst_growth_mb"], "MB", runs=found["runs"]["growth_mb"],
        goal=f"≤ {GROWTH_GOAL_MB:g} MB", met=found["worst_growth_mb"] <= GROWTH_GOAL_MB,
        note=f"the largest of {runs} runs (VmHWM after − VmRSS before); the median run "
             f"{found['rss_before_mb']:.0f} → {found['peak_rss_mb']:.0f} MB, "
             f"+{found['growth_mb']:.1f} MB; cp's own peak RSS "
             f"{found['cp_peak_rss_mb']:.1f} MB",
    )
    return [speed, growth]
