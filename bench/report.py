"""The results as a markdown table (README), a JSON file and the goals' verdicts."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.core import Result

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PACKAGES = ("Pillow", "pypdfium2", "pypdf", "python-magic", "boto3", "SQLAlchemy",
            "psycopg", "celery", "moto")
README_SECTION = f"""
## Performance

`make bench` (about five and a half minutes on 2 cores, longer while other
jobs share them; it must stay under ten) generates its inputs, runs Sluice on
PostgreSQL, Redis and a moto S3 server on this machine, prints every goal as
met or missed, writes `bench/results/latest.json` and rewrites the table below.
`python -m bench --sections e2e,floor --runs 3 --no-readme` runs part of it
(without `--no-readme` the table keeps only those sections); `--quick` checks
that everything works in about two minutes, on smaller sizes throughout.

What each section measures:

- *steps*: each of Sluice's steps called directly, per file, beside the
  cheapest known way to do the same job (SHA-256 in memory, libmagic,
  `pdftotext`, a reduced decode, bare `put_object`, one psycopg INSERT).
- *e2e* and *floor*: files/s from the first enqueue to the last document
  stored, with one `sluice worker -c 2`, and the same steps for the same files
  in one process with reused clients (the floor).
- *worker_rss*: the peak RSS of a worker's processes over `tests/corpus`.
- *upload*: `sluice serve` on the embedded defaults takes a 500 MB file from
  curl; MB/s beside `cp` of the same file, and the API's peak RSS growth.
  `python bench/api_upload.py [--size-mb 500]` runs it alone.
- *migrate*: `sluice migrate` of generated 2 KB text files, end to end (until
  every document is final), on the embedded defaults and on PostgreSQL + Redis
  + moto, beside the pipeline's floor (SHA-256 + upload + INSERT per file, one
  process, measured in the same run), and the migrate process's peak RSS beside
  a migration of a tenth of the files. `make bench` migrates 1,000 files per
  backend, not the issue's 10,000, to stay under ten minutes; `python -m bench
  --sections migrate --migrate-files 10000 --no-readme` (about six minutes)
  or `python -m bench.migrate_bench --files 10000` measures the full size.
- *reconcile*: one reconciliation of 1,000,000 rows against 1,000,000 objects,
  beside listing the objects alone and scanning the table alone, and its peak
  RSS. The table is real (a scratch PostgreSQL database filled by COPY); the
  lister is a stand-in, `bench/s3_standin.py`: a small HTTP server answering
  ListObjectsV2 and HEAD from sorted key files, with no delay per page, reached
  through Sluice's own S3 client, because moto cannot hold a million objects.
  `python -m bench.reconcile_million` runs it alone and also times the merge
  with both sides in memory (`--latency-ms` delays each page as a remote bucket
  would).

How to read it: each figure is a median of several interleaved runs (the
upload's of 3, the migrations and the reconciliation of one run each). *end to
end ÷ floor* divides by the floor's rate times the parallelism the box actually
offered (`min(2, free cores × wall ÷ CPU per file)`), so other jobs on a shared
machine do not count against Sluice. Absolute rates do move with such jobs: the
notes give the free cores measured during each run, the CPU each process spent
per file and the rate that CPU allows on 2 free cores. The migrations' notes
also say where each main thread's wall time went: on a CPU, waiting for a core
(run queue), or blocked, and on what (sleep, pipe, lock, poll, disk; sampled
from `/proc`). Peak RSS is the kernel's high-water mark of the process itself
(`VmHWM`, or GNU `time` around it): `getrusage` of a child would report the
benchmark's own peak, which Linux carries into a child across fork and exec.

{START}
{END}
"""


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1),
            "kernel": platform.release()}


def versions() -> dict[str, str]:
    found = {"Python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _verdict(result: Result) -> str:
    if result.met is None:
        return ""
    return "met" if result.met else "**missed**"


def markdown(results: list[Result], titles: dict[str, str], meta: dict[str, Any]) -> str:
    host = meta["machine"]
    lines = [
        f"Measured {meta['date']} on {host['cpu']}, {host['cores']} cores, "
        f"{host['memory_gib']} GiB; Redis, PostgreSQL and moto on the same machine.",
        "Versions: " + ", ".join(f"{name} {version}"
                                 for name, version in meta["versions"].items()) + ".",
        "",
    ]
    for section, title in titles.items():
        rows = [result for result in results if result.section == section]
        if not rows:
            continue
        lines += [f"**{title}**", "",
                  "| measure | value | reference | ratio | goal | verdict | note |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for result in rows:
            reference = ""
            if result.reference is not None:
                reference = f"{_number(result.reference)} ({result.reference_label})"
            elif result.reference_label:
                reference = result.reference_label
            lines.append(
                f"| {result.label} | {_number(result.value, result.unit)} | {reference} | "
                f"{_number(result.ratio, '×') if result.ratio is not None else ''} | "
                f"{result.goal or ''} | {_verdict(result)} | {result.note or ''} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_readme(readme: Path, table: str) -> None:
    """Put ``table`` between the markers, adding a Performance section if there is none."""
    current = readme.read_text() if readme.exists() else ""
    if START not in current:
        current = (current.rstrip() + "\n" + README_SECTION).lstrip()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    readme.write_text(pattern.sub(lambda _: f"{START}\n{table}{END}", current, count=1))


def write_json(folder: Path, results: list[Result], meta: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = meta["date"].replace(":", "").replace("-", "")
    path = folder / f"bench-{stamp}.json"
    payload = {**meta, "results": [result.as_dict() for result in results]}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    (folder / "latest.json").write_text(path.read_text())
    return path


def meta() -> dict[str, Any]:
    return {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "machine": machine(), "versions": versions()}


def goal_lines(results: list[Result]) -> list[str]:
    return [f"{'MET   ' if result.met else 'MISSED'} {result.label}: "
            f"{_number(result.value, result.unit)} (goal {result.goal})"
            for result in results if result.met is not None]
