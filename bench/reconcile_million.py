"""Reconciling 1,000,000 rows against 1,000,000 objects: time and peak memory.

Goal (issue 4): a reconciliation costs at most 1.2 x (listing the objects +
scanning the table), and its peak RSS is at most 150 MB.

The table is real: PostgreSQL on 127.0.0.1, filled with COPY. The listing side
is a stand-in S3 server (``bench/s3_standin.py``) answering ListObjectsV2 and
HEAD from sorted key files, reached through Sluice's own S3Store and boto3
client, so the listing code measured is the production one (signed requests,
raw pages parsed with ``xml.etree``); moto cannot hold a million objects.

Each measurement runs in a fresh process, so that its peak RSS is its own, and
the three are interleaved ``--repeats`` times; medians are reported.

    python -m bench.reconcile_million [--rows 1000000] [--repeats 3] [--latency-ms 0]

``make bench`` runs this as its ``reconcile`` section (``bench/reconcile.py``).
``--latency-ms`` makes the stand-in answer each listing page that much later, as
a remote bucket does; the default, 0, leaves only Sluice's own costs, which is
the harder case for the goal (no waiting for the listing to hide work behind).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BUCKET = "bench-bucket"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}

# What the generated store holds besides consistent documents, and so what a
# run must find: the benchmark checks its counts as well as its speed.
MISSING, SIZE_MISMATCHES, ORPHANS, DELETED_PRESENT, STUCK = 100, 100, 100, 100, 50
THUMBNAILS = 25_000
COPY_COLUMNS = ("id, status, original_name, file_name, file_size, sha256, mime_type, "
                "s3_bucket, s3_key, thumbnail_key, tags, source, uploaded_at, "
                "updated_at, is_active, attempts, spool_ref, lease_until, deleted_at")
COPY_CHUNK_ROWS = 20_000
RSS_GOAL_MB = 150
RATIO_GOAL = 1.2


# --- data ---------------------------------------------------------------------

def generate(database_url: str, workdir: Path, rows: int) -> dict[str, int]:
    """COPY ``rows`` documents into the table and write the matching key files."""
    rng = random.Random(4)
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    counts = dict.fromkeys(("stored", "duplicate", "failed", "deleted", "received",
                            "processing", "objects"), 0)
    originals = (workdir / "documents.keys").open("w")
    thumbnails = (workdir / "thumbnails.keys").open("w")
    special = {"missing": MISSING, "size": SIZE_MISMATCHES, "present": DELETED_PRESENT,
               "stuck": STUCK, "fresh": STUCK, "thumbnail": THUMBNAILS}

    def line(document_id: str, status: str, key: str | None, thumb: str | None,
             active: bool, updated: str, lease: str | None) -> str:
        nul = "\\N"
        return "\t".join((
            document_id, status, "scan.pdf", f"{document_id}.pdf", "1000",
            document_id.replace("-", "") * 2, "application/pdf", BUCKET,
            key or nul, thumb or nul, "[]", "cli", old, updated,
            "t" if active else "f", "1", f"spool/{document_id}" if status in (
                "received", "processing") else nul, lease or nul,
            nul if active else old)) + "\n"

    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY documents ({COPY_COLUMNS}) FROM STDIN") as copy:
            chunk = []
            for index in range(rows):
                document_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                chunk.append(_row(index, document_id, special, counts, line, originals,
                                  thumbnails, old, soon))
                if len(chunk) >= COPY_CHUNK_ROWS:
                    copy.write("".join(chunk))
                    chunk = []
            copy.write("".join(chunk))
        connection.commit()
    for _ in range(ORPHANS):
        originals.write(f"documents/{uuid.uuid4()}.pdf\t1000\n")
    counts["objects"] += ORPHANS
    originals.close()
    thumbnails.close()

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE documents")
    return counts


def _row(index: int, document_id: str, special: dict[str, int], counts: dict[str, int],
         line: Any, originals: Any, thumbnails: Any, old: str, soon: str) -> str:
    key = f"documents/{document_id}.pdf"
    band = index % 1000
    if band < 10:
        counts["duplicate"] += 1
        return line(document_id, "duplicate", None, None, True, old, None)
    if band < 20:
        counts["failed"] += 1
        return line(document_id, "failed", None, None, True, old, None)
    if band < 25:
        counts["deleted"] += 1
        if _take(special, "present"):
            originals.write(f"{key}\t1000\n")
            counts["objects"] += 1
        return line(document_id, "stored", key, None, False, old, None)
    if _take(special, "stuck"):
        counts["received"] += 1
        return line(document_id, "received", None, None, True, old, None)
    if _take(special, "fresh"):
        counts["processing"] += 1
        return line(document_id, "processing", None, None, True, old, soon)

    counts["stored"] += 1
    if _take(special, "missing"):
        return line(document_id, "stored", key, None, True, old, None)
    size = 999 if _take(special, "size") else 1000
    originals.write(f"{key}\t{size}\n")
    counts["objects"] += 1
    thumb = None
    if _take(special, "thumbnail"):
        thumb = f"thumbnails/{document_id}.jpg"
        thumbnails.write(f"{thumb}\t5000\n")
        counts["objects"] += 1
    return line(document_id, "stored", key, thumb, True, old, None)


def _take(special: dict[str, int], name: str) -> bool:
    if special[name] <= 0:
        return False
    special[name] -= 1
    return True


# --- one measured phase per process ------------------------------------------

def phase(name: str, database_url: str, endpoint: str, workdir: Path) -> dict[str, Any]:
    # Imported before the clock starts: what is measured is the work.
    import pipeline.reconcile.run  # noqa: F401
    import pipeline.storage.s3  # noqa: F401
    from pipeline.settings import Settings

    settings = Settings(_env_file=None, var_dir=workdir / "var",
                        database_url=database_url, storage_url=f"s3://{BUCKET}",
                        s3_endpoint_url=endpoint)
    started, cpu = time.perf_counter(), os.times()
    detail = PHASES[name](settings)
    now = os.times()
    return {
        "phase": name,
        "wall": time.perf_counter() - started,
        "cpu": (now.user - cpu.user) + (now.system - cpu.system),
        # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak into
        # a child across fork and exec, so ru_maxrss would be the runner's.
        "peak_rss_mb": _own_peak_kib() / 1024,
        **detail,
    }


def _own_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def list_objects(settings: Any) -> dict[str, Any]:
    from pipeline.reconcile.keyspace import Layout
    from pipeline.reconcile.s3_listing import iter_pages
    from pipeline.storage.s3 import S3Store

    store = S3Store(settings)
    listed = 0
    for section in Layout(store.bucket, store.prefix).sections:
        for page in iter_pages(store.client, store.bucket, section.prefix):
            listed += len(page)
    return {"objects": listed}


def scan_table(settings: Any) -> dict[str, Any]:
    from pipeline.db.engine import make_engine
    from pipeline.reconcile.table import scan_documents

    engine = make_engine(settings.database_url)
    scanned = 0
    with engine.connect() as connection:
        for _ in scan_documents(connection):
            scanned += 1
    return {"rows": scanned}


def run_reconcile(settings: Any) -> dict[str, Any]:
    from pipeline.reconcile import RunOptions, reconcile
    from pipeline.runtime import Runtime

    runtime = Runtime(settings)
    result = reconcile(runtime, RunOptions.from_settings(settings, trigger="bench"))
    return {"rows": result.stats["rows_scanned"],
            "objects": sum(result.stats["objects_listed"].values()),
            "inspected": result.stats["objects_inspected"],
            "counts": {k: v for k, v in result.counts.items() if v}}


def merge_only(settings: Any) -> dict[str, Any]:
    """Diagnostic: the merge's own CPU, both sides read into memory first."""
    from pipeline.db.engine import make_engine
    from pipeline.db.models import utcnow
    from pipeline.reconcile.keyspace import Layout
    from pipeline.reconcile.merge import Clock, Merge, MergeSink
    from pipeline.reconcile.s3_listing import iter_pages
    from pipeline.reconcile.table import scan_documents
    from pipeline.storage.s3 import S3Store

    store = S3Store(settings)
    layout = Layout(store.bucket, store.prefix)
    listings = {s.role: [o for p in iter_pages(store.client, store.bucket, s.prefix)
                         for o in p] for s in layout.sections}
    with make_engine(settings.database_url).connect() as connection:
        rows = list(scan_documents(connection))
    found: list[Any] = []
    sink = MergeSink(found.append, found.append, lambda *_: None, lambda *_: None)
    now = utcnow()
    clock = Clock(now, now - timedelta(hours=1), now - timedelta(minutes=15))
    started, cpu = time.perf_counter(), time.process_time()
    Merge(layout, clock, sink).run(rows, listings)
    return {"merge_wall": time.perf_counter() - started,
            "merge_cpu": time.process_time() - cpu, "candidates": len(found)}


PHASES = {"list": list_objects, "scan": scan_table, "reconcile": run_reconcile,
          "merge": merge_only}


# --- orchestration ------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay of each listing page in the stand-in S3 server")
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--database-url")
    parser.add_argument("--endpoint")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    if args.phase:
        measured = phase(args.phase, args.database_url, args.endpoint, args.workdir)
        print(json.dumps(measured))
        return
    orchestrate(args.rows, args.repeats, args.latency_ms)


def orchestrate(rows: int, repeats: int, latency_ms: float = 0.0,
                merge: bool = True) -> dict[str, Any]:
    """Generate, measure, print the table; return the figures (for a bench runner).

    ``merge`` adds the diagnostic run of the merge alone (both sides in memory).
    """
    name = f"sluice_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-") as folder:
            workdir = Path(folder)
            _say(f"schema and {rows:,} rows by COPY ...")
            from pipeline.db.schema import upgrade

            upgrade(database_url)
            started = time.perf_counter()
            counts = generate(database_url, workdir, rows)
            _say(f"generated in {time.perf_counter() - started:.1f} s: {counts}")
            generated = time.perf_counter() - started

            server, endpoint = _start_standin(workdir, latency_ms)
            results = _measure(repeats, database_url, endpoint, workdir, server.pid, name,
                               merge)
            figures = _report(results)
            figures["generate_seconds"] = round(generated, 1)
            figures["generated"] = counts
            figures["latency_ms"] = latency_ms
            return figures
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_standin(workdir: Path,
                   latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    from tests.support.services import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.s3_standin", str(port), BUCKET, str(latency_ms),
         str(workdir / "documents.keys"), str(workdir / "thumbnails.keys")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    ready = server.stdout.readline()
    if not ready.startswith("ready"):
        raise RuntimeError("the stand-in S3 server did not start")
    _say(f"stand-in S3 server {ready.strip()} on 127.0.0.1:{port}, "
         f"{latency_ms:g} ms a listing page")
    return server, f"http://127.0.0.1:{port}"


def _measure(repeats: int, database_url: str, endpoint: str, workdir: Path,
             server_pid: int, database: str,
             merge: bool = True) -> dict[str, list[dict[str, Any]]]:
    from bench.core import CpuSampler, free_cores, machine_busy_seconds, pg_backend_pids

    postgres = pg_backend_pids(PG_ADMIN_URL, database)
    results: dict[str, list[dict[str, Any]]] = {"list": [], "scan": [], "reconcile": []}
    try:
        for repeat in range(repeats):
            for name in results:
                # CPU of the phase's own process (all of it, imports included), of
                # the stand-in S3 server and of PostgreSQL, and what other jobs on
                # the machine left free while it ran.
                sampler = CpuSampler({"stand-in S3": lambda: [server_pid],
                                      "postgres": postgres}, interval=0.2)
                busy, children = machine_busy_seconds(), _children_cpu()
                started = time.monotonic()
                sampler.start()
                result = _run_phase(name, database_url, endpoint, workdir)
                cpu = sampler.stop()
                window = time.monotonic() - started
                result["process_cpu"] = _children_cpu() - children
                result["server_cpu"] = cpu["stand-in S3"]
                result["postgres_cpu"] = cpu["postgres"]
                result["free_cores"] = free_cores(
                    machine_busy_seconds() - busy, result["process_cpu"] + sum(cpu.values()),
                    window)
                results[name].append(result)
                _say(f"run {repeat + 1} {name}: {result['wall']:.2f} s wall, "
                     f"{result['cpu']:.2f} s cpu, {result['postgres_cpu']:.2f} s postgres, "
                     f"{result['server_cpu']:.2f} s stand-in, {result['peak_rss_mb']:.0f} MB, "
                     f"{result['free_cores']:.2f} cores free")
    finally:
        postgres.close()
    if merge:
        results["merge"] = [_run_phase("merge", database_url, endpoint, workdir)]
    return results


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_phase(name: str, database_url: str, endpoint: str,
               workdir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile_million", "--phase", name,
         "--database-url", database_url, "--endpoint", endpoint,
         "--workdir", str(workdir)],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, **AWS_ENV, "PYTHONPATH": str(REPO)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    listing, scanning, reconciling = (median(name, "wall")
                                      for name in ("list", "scan", "reconcile"))
    ratio = reconciling / (listing + scanning)
    peak = max(r["peak_rss_mb"] for r in results["reconcile"])
    last = results["reconcile"][-1]
    merge = results["merge"][0] if results.get("merge") else None

    print()
    print(f"rows {last['rows']:,}  objects {last['objects']:,}  "
          f"inspected (sample) {last['inspected']}")
    print(f"{'':<12}{'wall s':>9}{'cpu s':>9}{'server cpu s':>14}{'postgres cpu s':>16}"
          f"{'peak RSS MB':>13}{'free cores':>12}")
    for name in ("list", "scan", "reconcile"):
        print(f"{name:<12}{median(name, 'wall'):>9.2f}{median(name, 'cpu'):>9.2f}"
              f"{median(name, 'server_cpu'):>14.2f}{median(name, 'postgres_cpu'):>16.2f}"
              f"{max(r['peak_rss_mb'] for r in results[name]):>13.0f}"
              f"{median(name, 'free_cores'):>12.2f}")
    if merge is not None:
        print(f"merge alone (both sides in memory): {merge['merge_wall']:.2f} s wall, "
              f"{merge['merge_cpu']:.2f} s cpu")
    print(f"reconcile / (list + scan) = {reconciling:.2f} / {listing + scanning:.2f} = "
          f"{ratio:.2f} (goal <= {RATIO_GOAL}): "
          f"{'met' if ratio <= RATIO_GOAL else 'NOT met'}")
    print(f"peak RSS {peak:.0f} MB (goal <= {RSS_GOAL_MB}): "
          f"{'met' if peak <= RSS_GOAL_MB else 'NOT met'}")
    expected = {"missing_object": MISSING, "orphan_object": ORPHANS,
                "size_mismatch": SIZE_MISMATCHES,
                "deleted_but_present": DELETED_PRESENT, "stuck": STUCK}
    print(f"findings {last['counts']} (expected {expected}): "
          f"{'as planted' if last['counts'] == expected else 'DIFFERENT'}")
    phases = {name: {field: median(name, field)
                     for field in ("wall", "cpu", "process_cpu", "server_cpu",
                                   "postgres_cpu", "free_cores")}
              | {"peak_rss_mb": max(r["peak_rss_mb"] for r in results[name]),
                 "runs": [r["wall"] for r in results[name]]}
              for name in ("list", "scan", "reconcile")}
    return {"list_seconds": listing, "scan_seconds": scanning,
            "reconcile_seconds": reconciling, "ratio": ratio, "peak_rss_mb": peak,
            "merge_cpu_seconds": merge["merge_cpu"] if merge else None,
            "merge_wall_seconds": merge["merge_wall"] if merge else None,
            "rows": last["rows"], "objects": last["objects"],
            "inspected": last["inspected"], "phases": phases,
            "findings": last["counts"], "expected_findings": expected,
            "findings_as_planted": last["counts"] == expected}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
