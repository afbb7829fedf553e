"""Sluice on real services for the benchmark, all on loopback.

A moto S3 server (a subprocess), a scratch PostgreSQL database (dropped at the
end), a Redis queue of its own, and when asked a real ``sluice worker``
subprocess. Between measured runs ``reset`` empties the tables, the bucket and
the spool, so the same input files can be ingested again as new documents.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

import boto3
import psycopg
from sqlalchemy import func, select, text

from pipeline.db.models import FINAL_STATUSES, Document
from pipeline.db.schema import upgrade
from pipeline.documents import Actor
from pipeline.intake import Intake, receive_file
from pipeline.runtime import Runtime
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
BUCKET = "sluice-bench"
# moto accepts any credentials; boto3 only needs some to sign with.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "sluice-bench", "AWS_SECRET_ACCESS_KEY": "sluice-bench",
           "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class BenchStack:
    """The services and a Sluice runtime pointed at them; ``close`` undoes it all."""

    def __init__(self, root: Path):
        self.root = root
        self.database = f"sluice_bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.moto: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = root / "worker.log"
        os.environ.update(AWS_ENV)

        self.moto_port = free_port()
        self._start_moto()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}"
        self.settings = Settings(
            _env_file=None, var_dir=root / "var", inbox=root / "inbox",
            database_url=self.database_url, broker_url=REDIS_URL,
            queue_name=f"sluice-bench-{os.getpid()}-{secrets.token_hex(3)}",
            storage_url=f"s3://{BUCKET}", s3_endpoint_url=self.moto_url,
        )
        self.settings.spool.mkdir(parents=True, exist_ok=True)
        self.settings.quarantine.mkdir(parents=True, exist_ok=True)
        upgrade(self.database_url)
        self.s3 = boto3.client("s3", endpoint_url=self.moto_url, region_name="us-east-1")
        self.s3.create_bucket(Bucket=BUCKET)
        self.runtime = Runtime(self.settings)
        from workers.celery_app import make_celery

        self.app = make_celery(self.settings)

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def _start_moto(self) -> None:
        self.moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **AWS_ENV},
        )
        wait_for_port(self.moto_port)
        urllib.request.urlopen(self.moto_url + "/moto-api/", timeout=10).close()

    @property
    def env(self) -> dict[str, str]:
        variables = {}
        for name, value in self.settings.model_dump().items():
            if value is None:
                continue
            if isinstance(value, (tuple, list)):
                value = ",".join(value)
            variables[f"SLUICE_{name.upper()}"] = str(value)
        return {**os.environ, **AWS_ENV, **variables, "PYTHONPATH": str(REPO)}

    def start_worker(self, concurrency: int = 2) -> None:
        """``sluice worker -c N`` as an operator runs it; returns once it is ready."""
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "-c", str(concurrency),
             "-n", f"bench-{uuid.uuid4().hex[:8]}@%h"],
            env=self.env, cwd=self.root, stdout=self.worker_log.open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if " ready." in self.worker_log.read_text(errors="replace"):
                return
            if self.worker.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker did not start:\n{self.worker_log.read_text()[-3000:]}")

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        try:
            os.killpg(self.worker.pid, signal.SIGTERM)
            self.worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        except ProcessLookupError:
            pass
        self.worker = None

    def intake(self, paths: Iterable[Path]) -> list[tuple[uuid.UUID, str]]:
        """Hand files over as ``sluice ingest`` does, without enqueueing yet."""
        actor, handed = Actor.here(), []
        for path in paths:
            intake = Intake(source="cli", original_name=path.name, source_path=str(path))
            document = receive_file(self.runtime, path, intake, actor)
            handed.append((document.id, document.spool_ref))
        return handed

    def enqueue(self, handed: list[tuple[uuid.UUID, str]]) -> None:
        from workers.celery_app import enqueue_ingest

        for document_id, spool_ref in handed:
            enqueue_ingest(self.app, document_id, spool_ref)

    def wait_final(self, count: int, timeout: float, poll_seconds: float = 0.1) -> float:
        """Block until ``count`` documents are final; returns the last one's time (epoch s)."""
        deadline = time.monotonic() + timeout
        query = select(func.count()).where(Document.status.in_(FINAL_STATUSES))
        with self.runtime.session() as session:
            while session.scalar(query) < count:
                session.rollback()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"documents not final after {timeout:.0f} s; see "
                                       f"{self.worker_log}")
                time.sleep(poll_seconds)
            last = session.scalar(select(func.max(Document.updated_at)))
        return last.timestamp()

    def statuses(self) -> dict[str, int]:
        with self.runtime.session() as session:
            rows = session.execute(select(Document.status, func.count())
                                   .group_by(Document.status))
            return {status: number for status, number in rows}

    def reset(self) -> None:
        """Empty the tables, the bucket and the spool: the next run starts clean."""
        with self.runtime.session() as session:
            session.execute(text("TRUNCATE document_events, document_texts, documents"))
            session.commit()
        self.empty_bucket()
        for leftover in self.settings.spool.glob("*"):
            if leftover.is_file():
                leftover.unlink()

    def empty_bucket(self) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=BUCKET):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    def _drop_queue(self) -> None:
        # Only after a failed run can messages be left; the queue is this run's own.
        import redis

        redis.Redis.from_url(REDIS_URL).delete(self.settings.queue_name)

    def backend_pids(self) -> list[int]:
        """PostgreSQL server processes serving the bench database."""
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                 (self.database,)).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self.stop_worker()
        self.runtime.close()
        self._drop_queue()
        if self.moto is not None:
            self.moto.terminate()
            self.moto.wait(timeout=10)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
