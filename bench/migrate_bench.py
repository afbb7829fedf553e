"""Benchmark: ``sluice migrate`` of many small generated files, end to end.

For each backend (the embedded defaults; Postgres + Redis + moto), with a running
worker of 2 processes:

* floor       the pipeline's own cost per file, one process, reused clients:
              SHA-256, upload (put with its checksum), INSERT + COMMIT of the row
* migrate     ``sluice migrate FOLDER`` from start until every document is final;
              files/s, and the migrate process's peak RSS (from wait4)
* memory      the same migration at a tenth of the files: peak RSS must not grow
              with the number of files

Goal: migrate files/s >= 70% of the floor. Usage:

    python -m bench.migrate_bench [--files 10000] [--backends embedded,services]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert

from pipeline.db.models import Document, utcnow
from tests.conftest import embedded_settings, make_bucket, services_settings
from tests.support.services import MotoServer, postgres_database
from tests.support.stack import Stack

FILES_PER_FOLDER = 100
GOAL = 0.70


@dataclass
class Result:
    backend: str
    files: int
    floor_per_second: float
    migrate_per_second: float
    spooled_per_second: float
    peak_rss_mb: float
    small_files: int
    small_peak_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.migrate_per_second / self.floor_per_second


def generate(root: Path, count: int, size: int, label: str) -> Path:
    """``count`` text files of about ``size`` bytes, each with unique content."""
    for number in range(count):
        folder = root / f"folder-{number // FILES_PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        line = f"{label} document {number} {secrets.token_hex(16)}\n"
        body = (line * (size // len(line) + 1))[:size]
        (folder / f"letter-{number:06d}.txt").write_text(body)
    return root


def measure_floor(stack: Stack, files: list[Path]) -> float:
    """Hash + upload + insert per file, one process, the stack's reused clients."""
    store, engine = stack.runtime.store, stack.runtime.engine
    started = time.perf_counter()
    with engine.connect() as connection:
        for path in files:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            document_id = uuid.uuid4()
            key = f"floor/{document_id}.txt"
            store.put_bytes(key, data, sha256=digest, content_type="text/plain",
                            metadata={"document-id": str(document_id)})
            connection.execute(insert(Document).values(
                id=document_id, status="stored", original_name=path.name,
                file_name=f"{document_id}.txt", file_size=len(data), sha256=digest,
                mime_type="text/plain", s3_bucket=store.bucket, s3_key=key, tags=[],
                source="cli", uploaded_at=utcnow(), updated_at=utcnow(),
                is_active=True, attempts=0))
            connection.commit()
    return len(files) / (time.perf_counter() - started)


def run_migrate(stack: Stack, source: Path) -> tuple[float, float, dict]:
    """Seconds until every document is final, peak RSS in MB, and the JSON summary."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "WARNING", "migrate",
         str(source), "--json"],
        env=stack.env, cwd=stack.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"migrate failed ({process.returncode}): {stderr.decode()}")
    return elapsed, usage.ru_maxrss / 1024, json.loads(stdout)


def bench_backend(backend: str, files: int, size: int, work: Path,
                  cleanup: ExitStack) -> Result:
    root = work / backend
    root.mkdir()
    if backend == "embedded":
        settings = embedded_settings(root)
    else:
        moto = MotoServer()
        moto.start()
        cleanup.callback(moto.stop)
        bucket = f"bench-{secrets.token_hex(4)}"
        make_bucket(moto.url, bucket)
        database = cleanup.enter_context(postgres_database())
        settings = services_settings(root, database, moto, storage_url=f"s3://{bucket}")
    stack = Stack(backend, settings, root)
    cleanup.callback(stack.close)

    floor_files = sorted(generate(root / "floor", min(files, 3000), size, "floor")
                         .rglob("*.txt"))
    floor = measure_floor(stack, floor_files)

    stack.start_worker(concurrency=2)
    small = generate(root / "small", max(files // 10, 1), size, "small")
    _, small_rss, _ = run_migrate(stack, small)
    tree = generate(root / "tree", files, size, "tree")
    elapsed, rss, summary = run_migrate(stack, tree)
    stored = summary["outcomes"].get("stored", 0)
    if stored != files:
        raise RuntimeError(f"expected {files} stored, got {summary['outcomes']}")
    return Result(backend, files, floor, files / elapsed,
                  summary["files_per_second"], rss, max(files // 10, 1), small_rss)


def report(results: list[Result]) -> str:
    lines = [
        "| backend | files | floor files/s | migrate files/s (end to end) | ratio "
        "| spooling files/s | migrate peak RSS | at a tenth of the files |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.backend} | {r.files} | {r.floor_per_second:.0f} "
            f"| {r.migrate_per_second:.0f} | {r.ratio:.0%} "
            f"{'(goal met)' if r.ratio >= GOAL else '(goal missed)'} "
            f"| {r.spooled_per_second:.0f} | {r.peak_rss_mb:.0f} MB "
            f"| {r.small_peak_rss_mb:.0f} MB ({r.small_files} files) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per file")
    parser.add_argument("--backends", default="embedded,services")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="sluice-migrate-bench-") as work:
        for backend in args.backends.split(","):
            with ExitStack() as cleanup:
                result = bench_backend(backend, args.files, args.size, Path(work),
                                       cleanup)
            print(f"{backend}: {result}", file=sys.stderr, flush=True)
            results.append(result)
    print(report(results))


if __name__ == "__main__":
    main()
