"""A running Sluice for tests: settings, a Celery worker process, and helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pipeline.db.models import FINAL_STATUSES, Document, DocumentEvent, DocumentText
from pipeline.db.schema import upgrade
from pipeline.documents import Actor
from pipeline.intake import Intake, receive_file
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from tests.support.services import AWS_TEST_ENV

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The SLUICE_* variables that rebuild ``settings`` in another process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(value)
        env[f"SLUICE_{name.upper()}"] = str(value)
    return env


@dataclass
class Stack:
    name: str
    settings: Settings
    root: Path
    worker: subprocess.Popen[bytes] | None = None
    worker_log: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        upgrade(self.settings.database_url)
        self.runtime = Runtime(self.settings)
        from workers.celery_app import make_celery

        self.app = make_celery(self.settings)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **AWS_TEST_ENV, **settings_env(self.settings), **self.extra_env,
                "PYTHONPATH": str(REPO)}

    def start_worker(self, concurrency: int = 2) -> None:
        self.worker_log = self.root / f"worker-{time.monotonic_ns()}.log"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "-c", str(concurrency),
             "-n", f"test-{uuid.uuid4().hex[:8]}@%h"],
            env=self.env, cwd=self.root, stdout=self.worker_log.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if " ready." in self.worker_log.read_text(errors="replace"):
                return
            if self.worker.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker did not start:\n{self.worker_log.read_text()}")

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        if self.worker is None:
            return
        try:
            os.killpg(self.worker.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        self.worker = None

    def ingest(self, path: Path, *, enqueue: bool = True, **intake: Any) -> uuid.UUID:
        """Hand one file over as ``sluice ingest`` does; returns the document id."""
        from workers.celery_app import enqueue_ingest

        details = {"source": "cli", "original_name": path.name, "source_path": str(path),
                   **intake}
        document = receive_file(self.runtime, path, Intake(**details), Actor.here())
        if enqueue:
            enqueue_ingest(self.app, document.id, document.spool_ref)
        return document.id

    def wait(self, ids: Iterable[uuid.UUID], timeout: float = 120.0) -> dict[uuid.UUID, Document]:
        """Block until every document is final; fail the test if one is not."""
        ids = list(ids)
        deadline = time.monotonic() + timeout
        while True:
            found = self.documents(ids)
            if all(d.status in FINAL_STATUSES for d in found.values()) and len(found) == len(ids):
                return found
            if time.monotonic() > deadline:
                pending = {str(i): d.status for i, d in found.items()
                           if d.status not in FINAL_STATUSES}
                log = self.worker_log.read_text()[-4000:] if self.worker_log else ""
                raise AssertionError(f"not final after {timeout}s: {pending}\n{log}")
            time.sleep(0.1)

    def documents(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Document]:
        with self.runtime.session() as session:
            rows = session.scalars(select(Document).where(Document.id.in_(list(ids))))
            return {row.id: row for row in rows}

    def document(self, document_id: uuid.UUID) -> Document:
        with self.runtime.session() as session:
            return session.get(Document, document_id, populate_existing=True)

    def text(self, document_id: uuid.UUID) -> str | None:
        with self.runtime.session() as session:
            row = session.get(DocumentText, document_id)
            return row.content if row else None

    def events(self, document_id: uuid.UUID) -> list[str]:
        with self.runtime.session() as session:
            return list(session.scalars(
                select(DocumentEvent.event).where(DocumentEvent.document_id == document_id)
                .order_by(DocumentEvent.id)))

    def object_keys(self, prefix: str = "") -> list[str]:
        return [info.key for info in self.runtime.store.iter_objects(prefix)]

    def close(self) -> None:
        self.stop_worker()
        self.runtime.close()


def processes() -> Iterator[tuple[int, list[str]]]:
    """Every process as (pid, the fields of /proc/PID/stat after its name)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(entry.name), fields


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for pid, fields in processes():
        children.setdefault(int(fields[1]), []).append(pid)
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
