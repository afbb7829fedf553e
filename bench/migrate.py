"""Section ``migrate``: ``sluice migrate`` of small generated files, next to its floor.

A thin runner over ``bench.migrate_bench`` (which also runs alone). Per backend
(the embedded defaults; PostgreSQL + Redis + moto), on services of its own and
a ``sluice worker -c 2``:

* the floor: SHA-256 + upload + INSERT/COMMIT per file, one process, reused
  clients, over the same kind of files, measured in the same run;
* ``sluice migrate FOLDER`` end to end (until every document is final), files/s
  ÷ the floor, with the CPU each process spent per file;
* the migrate process's peak RSS, next to a migration of a tenth of the files.

The issue's size is 10,000 files per backend; that does not fit in ``make
bench``'s ten minutes next to everything else, so the section migrates
``DEFAULT_FILES`` unless told otherwise (``--migrate-files 10000``).
"""

from __future__ import annotations

import logging

from bench import migrate_bench
from bench.core import Context, Result, cpu_note, states_note

NAME = "migrate"
TITLE = "Batch migration (`sluice migrate`), end to end vs its floor"
DEFAULT_FILES = 1000
QUICK_FILES = 100
FILE_BYTES = 2048
FULL_FILES = 10_000
RSS_GOAL = 1.1  # × the peak at a tenth of the files: flat in the number of files
LABELS = {"embedded": "embedded (SQLite, local files)",
          "services": "PostgreSQL + Redis + moto"}

log = logging.getLogger(__name__)


def run(ctx: Context) -> list[Result]:
    files = ctx.options.get("migrate_files") or (QUICK_FILES if ctx.quick else DEFAULT_FILES)
    work = ctx.work / "migrate"
    work.mkdir()
    measured = migrate_bench.measure(files, FILE_BYTES, work=work, say=log.info)
    results: list[Result] = []
    for measurement in measured:
        results += _results(measurement)
    return results


def _results(m: migrate_bench.Measurement) -> list[Result]:
    label = LABELS.get(m.backend, m.backend)
    key = f"migrate.{m.backend}"
    size_note = ("" if m.files >= FULL_FILES else
                 f"; {m.files:,} files, not the issue's {FULL_FILES:,}, to keep `make bench` "
                 f"under ten minutes (`python -m bench --sections migrate --migrate-files "
                 f"{FULL_FILES} --no-readme` runs those)")
    total_ms = sum(m.cpu_ms.values())
    floor = Result(
        NAME, f"{key}.floor_files_per_s",
        f"{label}: floor, hash + upload + insert ({m.floor_files:,} files)",
        m.floor_per_second, "files/s",
        note=f"one process, reused clients; {m.floor_free_cores:.2f} of 2 cores free of "
             f"other jobs; {cpu_note(m.floor_cpu_ms)}",
        detail={"cpu_ms_per_file": m.floor_cpu_ms, "files": m.floor_files,
                "free_cores": m.floor_free_cores},
    )
    rate = Result(
        NAME, f"{key}.files_per_s", f"{label}: sluice migrate ({m.files:,} files)",
        m.migrate_per_second, "files/s", reference=m.floor_per_second,
        reference_label="floor", ratio=m.ratio, goal=f"≥ {migrate_bench.GOAL:g} × reference",
        met=m.ratio >= migrate_bench.GOAL,
        note=f"{m.free_cores:.2f} of 2 cores free of other jobs; {m.spooled_per_second:.0f} "
             f"files/s without the command's start-up; CPU-bound ceiling on 2 free cores "
             f"{2000 / total_ms:.0f} files/s; {cpu_note(m.cpu_ms)}; main threads' wall "
             f"time: {states_note(m.states)}{size_note}",
        detail=m.as_dict(),
    )
    growth = (m.peak_rss_mb - m.small_peak_rss_mb) / max(m.files - m.small_files, 1) * 1000
    rss = Result(
        NAME, f"{key}.peak_rss", f"peak RSS of migrate, {label} ({m.files:,} files)",
        m.peak_rss_mb, "MB", reference=m.small_peak_rss_mb,
        reference_label=f"{m.small_files:,} files",
        ratio=m.peak_rss_mb / m.small_peak_rss_mb,
        goal=f"≤ {RSS_GOAL:g} × reference", met=m.peak_rss_mb <= RSS_GOAL * m.small_peak_rss_mb,
        note=f"{growth:+.2f} MB per 1,000 more files; the {m.small_files:,}-file run took "
             f"{m.small_per_second:.0f} files/s",
    )
    return [floor, rate, rss]
