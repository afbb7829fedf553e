"""Benchmark: ``sluice migrate`` of many small generated files, end to end.

For each backend (the embedded defaults; Postgres + Redis + moto), with a running
worker of 2 processes:

* floor       the pipeline's own cost per file, one process, reused clients:
              SHA-256, upload (put with its checksum), INSERT + COMMIT of the row
* migrate     ``sluice migrate FOLDER`` from start until every document is final;
              files/s, the migrate process's peak RSS (GNU time), and the CPU
              each process (migrate, Celery, sandboxes, moto, PostgreSQL, Redis)
              spent per file
* memory      the same migration at a tenth of the files, first: peak RSS must
              not grow with the number of files

Goal: migrate files/s >= 70% of the floor. ``make bench`` runs this as its
``migrate`` section (``bench/migrate.py``) at a smaller default; usage alone:

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
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.core import (
    CpuSampler,
    StateProfile,
    descendants,
    free_cores,
    machine_busy_seconds,
    parent_pid,
    pg_backend_pids,
    redis_pid,
    states_note,
)
from pipeline.db.models import Document, utcnow
from tests.conftest import embedded_settings, make_bucket, services_settings
from tests.support.services import PG_ADMIN_URL, MotoServer, postgres_database
from tests.support.stack import Stack

FILES_PER_FOLDER = 100
FLOOR_FILES = 3000
GOAL = 0.70
BACKENDS = ("embedded", "services")


@dataclass
class Measurement:
    backend: str
    files: int
    floor_per_second: float
    migrate_per_second: float
    spooled_per_second: float
    peak_rss_mb: float
    small_files: int
    small_peak_rss_mb: float
    small_per_second: float = 0.0
    floor_files: int = 0
    # CPU ms per file, by process; "migrate" is the ``sluice migrate`` process.
    floor_cpu_ms: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    free_cores: float = 0.0
    floor_free_cores: float = 0.0
    # Share of each main thread's wall time by state ("cpu", "run queue", "sleep", ...).
    states: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.migrate_per_second / self.floor_per_second

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def generate(root: Path, count: int, size: int, label: str) -> Path:
    """``count`` text files of about ``size`` bytes, each with unique content."""
    for number in range(count):
        folder = root / f"folder-{number // FILES_PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        line = f"{label} document {number} {secrets.token_hex(16)}\n"
        body = (line * (size // len(line) + 1))[:size]
        (folder / f"letter-{number:06d}.txt").write_text(body)
    return root


class Window:
    """CPU per process group and the cores other jobs left free, over one measurement;
    with ``states``, where those groups' wall time went (``StateProfile``)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]],
                 states: dict[str, Callable[[], list[int]]] | None = None):
        self.sampler = CpuSampler(groups)
        self.profile = StateProfile(states) if states else None
        self.states: dict[str, dict[str, float]] = {}

    def __enter__(self) -> Window:
        self.busy, self.started = machine_busy_seconds(), time.monotonic()
        self.sampler.start()
        if self.profile is not None:
            self.profile.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu = self.sampler.stop()
        if self.profile is not None:
            self.states = self.profile.stop()
        self.window = time.monotonic() - self.started
        self.machine = machine_busy_seconds() - self.busy

    def free_cores(self, extra_cpu: float = 0.0) -> float:
        return free_cores(self.machine, sum(self.cpu.values()) + extra_cpu, self.window)


def measure_floor(stack: Stack, files: list[Path],
                  groups: dict[str, Callable[[], list[int]]] | None = None
                  ) -> tuple[float, dict[str, float], float]:
    """Hash + upload + insert per file, one process, the stack's reused clients.

    Returns files/s, CPU ms per file by process, and the cores free of other jobs.
    """
    store, engine = stack.runtime.store, stack.runtime.engine
    with engine.connect() as connection, Window(groups or {}) as window:
        started = time.perf_counter()
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
        elapsed = time.perf_counter() - started
    cpu_ms = {name: seconds * 1000 / len(files) for name, seconds in window.cpu.items()}
    return len(files) / elapsed, cpu_ms, window.free_cores()


def run_migrate(stack: Stack, source: Path,
                groups: dict[str, Callable[[], list[int]]] | None = None
                ) -> tuple[float, float, dict, dict[str, float], float,
                           dict[str, dict[str, float]]]:
    """Seconds until every document is final, peak RSS in MB, the JSON summary,
    CPU seconds by process ("migrate" from wait4), the cores free of other jobs,
    and where the wall time of migrate, Celery's main process and its pool went.

    The peak RSS comes from GNU time around the command, not from this process's
    wait4: Linux carries the parent's high-water mark into a child across fork
    and exec, so wait4 would report the benchmark's own peak for any child
    smaller than it. ``time`` itself is small, so what it reports is the child's.
    """
    groups = groups or {}
    peak_file = stack.root / f"migrate-peak-{time.monotonic_ns()}.txt"
    launched: list[int] = []
    states = {"migrate": lambda: descendants(launched[0])[1:] if launched else [],
              **{name: groups[name] for name in ("celery main", "celery children")
                 if name in groups}}
    with Window(groups, states) as window:
        started = time.perf_counter()
        process = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M", "-o", str(peak_file), sys.executable, "-m",
             "cli.main", "--log-level", "WARNING", "migrate", str(source), "--json"],
            env=stack.env, cwd=stack.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        launched.append(process.pid)
        stdout, stderr = _drain(process)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"migrate failed ({process.returncode}): {stderr.decode()}")
    peak_mb = int(peak_file.read_text().split()[-1]) / 1024
    migrate_cpu = usage.ru_utime + usage.ru_stime
    cpu = {"migrate": migrate_cpu, **window.cpu}
    return (elapsed, peak_mb, json.loads(stdout), cpu, window.free_cores(migrate_cpu),
            window.states)


def _drain(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Both pipes to their end without waiting on the process (wait4 reaps it)."""
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))
    reader.start()
    stdout = process.stdout.read()
    reader.join()
    return stdout, errors[0]


def process_groups(stack: Stack, moto: MotoServer | None,
                   database: str | None) -> dict[str, Callable[[], list[int]]]:
    """The processes whose CPU a migration's breakdown shows, by role."""
    worker = stack.worker.pid if stack.worker is not None else None
    groups: dict[str, Callable[[], list[int]]] = {}
    if worker is not None:
        def below() -> list[int]:
            return [pid for pid in descendants(worker) if pid != worker]

        groups["celery main"] = lambda: [worker]
        groups["celery children"] = lambda: [p for p in below() if parent_pid(p) == worker]
        groups["sandboxes"] = lambda: [p for p in below() if parent_pid(p) != worker]
    if moto is not None and moto.process is not None:
        groups["moto"] = lambda: [moto.process.pid]
    if database is not None:
        groups["postgres"] = pg_backend_pids(PG_ADMIN_URL, database)
        redis = redis_pid()
        if redis:
            groups["redis"] = lambda: [redis]
    groups["bench"] = lambda: [os.getpid()]
    return groups


def bench_backend(backend: str, files: int, size: int, work: Path,
                  cleanup: ExitStack, floor_files: int = FLOOR_FILES) -> Measurement:
    root = work / backend
    root.mkdir()
    moto, database = None, None
    if backend == "embedded":
        settings = embedded_settings(root)
    else:
        moto = MotoServer()
        moto.start()
        cleanup.callback(moto.stop)
        bucket = f"bench-{secrets.token_hex(4)}"
        make_bucket(moto.url, bucket)
        database_url = cleanup.enter_context(postgres_database())
        database = database_url.rsplit("/", 1)[1]
        settings = services_settings(root, database_url, moto, storage_url=f"s3://{bucket}")
    stack = Stack(backend, settings, root)
    cleanup.callback(stack.close)

    floor_paths = sorted(generate(root / "floor", min(files, floor_files), size, "floor")
                         .rglob("*.txt"))
    floor_groups = process_groups(stack, moto, database)
    cleanup.callback(getattr(floor_groups.get("postgres"), "close", lambda: None))
    floor, floor_cpu, floor_free = measure_floor(stack, floor_paths, floor_groups)

    stack.start_worker(concurrency=2)
    groups = process_groups(stack, moto, database)
    cleanup.callback(getattr(groups.get("postgres"), "close", lambda: None))
    small_files = max(files // 10, 1)
    small = generate(root / "small", small_files, size, "small")
    small_elapsed, small_rss, *_ = run_migrate(stack, small, groups)
    tree = generate(root / "tree", files, size, "tree")
    elapsed, rss, summary, cpu, free, states = run_migrate(stack, tree, groups)
    stored = summary["outcomes"].get("stored", 0)
    if stored != files:
        raise RuntimeError(f"expected {files} stored, got {summary['outcomes']}")
    return Measurement(
        backend, files, floor, files / elapsed, summary["files_per_second"], rss,
        small_files, small_rss, small_per_second=small_files / small_elapsed,
        floor_files=len(floor_paths), floor_cpu_ms=floor_cpu,
        cpu_ms={name: seconds * 1000 / files for name, seconds in cpu.items()},
        free_cores=free, floor_free_cores=floor_free, states=states)


def measure(files: int, size: int = 2048, backends: tuple[str, ...] = BACKENDS,
            work: Path | None = None, floor_files: int = FLOOR_FILES,
            say: Callable[[str], None] = lambda _: None) -> list[Measurement]:
    """Every backend in turn, each on its own services; for a bench runner."""
    results = []
    with ExitStack() as outer:
        if work is None:
            work = Path(outer.enter_context(
                tempfile.TemporaryDirectory(prefix="sluice-migrate-bench-")))
        for backend in backends:
            with ExitStack() as cleanup:
                result = bench_backend(backend, files, size, work, cleanup, floor_files)
            say(f"{backend}: {result}")
            results.append(result)
    return results


def report(results: list[Measurement]) -> str:
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
            f"| {r.small_peak_rss_mb:.0f} MB ({r.small_files} files, "
            f"{r.small_per_second:.0f} files/s) |")
    lines.append("")
    for r in results:
        lines.append(f"{r.backend}: CPU ms/file, floor: " + _ms(r.floor_cpu_ms)
                     + "; migrate: " + _ms(r.cpu_ms)
                     + f"; {r.free_cores:.2f} of 2 cores free of other jobs"
                     + f"; main threads' wall time: {states_note(r.states)}")
    return "\n".join(lines)


def _ms(cpu_ms: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.1f}" for name, ms in cpu_ms.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per file")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()

    results = measure(args.files, args.size, tuple(args.backends.split(",")),
                      say=lambda line: print(line, file=sys.stderr, flush=True))
    print(report(results))


if __name__ == "__main__":
    main()
