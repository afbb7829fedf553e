"""The run ledger: a migration run, and what became of each of its entries.

A run's id is derived from the source's resolved path and the options that
shape its documents, so the same command finds the same run. Each entry's
document id is derived from the run id and the entry's key: after a crash
between spooling a document and writing its ledger row, the next pass finds the
document by that id and adopts it instead of taking the entry again. Ledger
rows are written in batches; the documents table is the truth for what was
taken, the ledger adds what was refused or skipped and why.

One process works on a run at a time: the run row names its owner (host, pid
and, on Linux, the process's start time), and a second process is refused while
the owner lives. A pid that is a zombie, or now belongs to a process started at
another time, is no owner.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from pipeline import liveness
from pipeline.db.models import Document, MigrationEntry, MigrationRun, utcnow
from pipeline.migration.entries import RECEIVED, Entry
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

RUN_NAMESPACE = uuid.UUID("5b0c7c43-3f4e-4f57-9a1c-6d1f0b2d8e11")
FLUSH_ROWS = 200
FLUSH_SECONDS = 2.0
HEARTBEAT_SECONDS = 10.0
# An owner on another host that has not written for this long is gone.
STALE_OWNER_SECONDS = 120
UNFINISHED = ("received", "processing")


class RunBusy(Exception):
    """Another live process is working on this run."""


def run_id_for(source: Path, fingerprint: dict[str, Any]) -> uuid.UUID:
    key = json.dumps({"source": str(source), "options": fingerprint}, sort_keys=True)
    return uuid.uuid5(RUN_NAMESPACE, key)


def key_bytes(entry: Entry) -> bytes:
    # Folder names may hold undecodable bytes (surrogate escapes): keep them exact.
    return entry.key.encode("utf-8", "surrogateescape")


class RunLedger:
    def __init__(self, runtime: Runtime, run_id: uuid.UUID, resuming: bool):
        self.runtime = runtime
        self.id = run_id
        self.resuming = resuming
        self.owner = owner_name(os.getpid())
        self._pending: list[dict[str, Any]] = []
        self._flushed_at = self._beat_at = time.monotonic()

    @classmethod
    def open(cls, runtime: Runtime, run_id: uuid.UUID, source: Path,
             options: dict[str, Any]) -> RunLedger:
        """Start the run, or resume it; raises RunBusy if its owner is still at work."""
        ledger = cls(runtime, run_id, resuming=False)
        with runtime.session() as session:
            run = session.get(MigrationRun, run_id, with_for_update=True)
            if run is None:
                session.add(MigrationRun(id=run_id, source=str(source),
                                         options=options, status="running",
                                         owner=ledger.owner, passes=1))
            else:
                _check_owner(run)
                run.status, run.owner = "running", ledger.owner
                run.passes, run.finished_at = run.passes + 1, None
                ledger.resuming = True
            try:
                session.commit()
            except IntegrityError as error:
                raise RunBusy("this migration was started by another process just "
                              "now") from error
        log.info("migration run run_id=%s source=%s resuming=%s", run_id, source,
                 ledger.resuming)
        return ledger

    def document_id(self, entry: Entry) -> uuid.UUID:
        digest = hashlib.sha1(self.id.bytes + key_bytes(entry)).digest()  # noqa: S324
        return uuid.UUID(bytes=digest[:16], version=5)

    def is_done(self, entry: Entry) -> bool:
        """True when an earlier pass recorded the entry, or took it as a document."""
        if not self.resuming:
            return False
        with self.runtime.session() as session:
            recorded = session.scalar(select(MigrationEntry.id).where(
                MigrationEntry.run_id == self.id,
                MigrationEntry.entry_key == _digest(entry)))
            if recorded is not None:
                return True
            document = session.get(Document, self.document_id(entry))
        if document is None:
            return False
        log.info("adopted document_id=%s path=%s", document.id, entry.path)
        self.record(entry, RECEIVED, document_id=document.id, size=document.file_size)
        return True

    def record(self, entry: Entry, outcome: str, *,
               document_id: uuid.UUID | None = None, code: str | None = None,
               message: str | None = None, size: int | None = None) -> None:
        self._pending.append({
            "run_id": self.id, "entry_key": _digest(entry), "path": entry.path,
            "outcome": outcome, "document_id": document_id, "error_code": code,
            "error_message": message[:2000] if message else None,
            "size": size if size is not None else entry.size,
            "source_modified_at": entry.modified_at, "recorded_at": utcnow(),
        })
        now = time.monotonic()
        if len(self._pending) >= FLUSH_ROWS or now - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows; an entry already recorded keeps its first row."""
        rows, self._pending = self._pending, []
        self._flushed_at = now = time.monotonic()
        beat = now - self._beat_at >= HEARTBEAT_SECONDS
        if not rows and not beat:
            return
        with self.runtime.session() as session:
            if rows:
                session.execute(_insert_ignoring_duplicates(session), rows)
            if beat:
                self._beat_at = now
                session.execute(update(MigrationRun).where(MigrationRun.id == self.id)
                                .values(updated_at=utcnow()))
            session.commit()

    def heartbeat(self) -> None:
        if time.monotonic() - self._beat_at >= HEARTBEAT_SECONDS:
            self.flush()

    def count_documents(self, statuses: tuple[str, ...]) -> int:
        with self.runtime.session() as session:
            counted = session.scalar(select(func.count()).select_from(Document).where(
                Document.migration_run_id == self.id, Document.status.in_(statuses)))
        return counted or 0

    def waiting_documents(self) -> list[uuid.UUID]:
        """Documents of this run still ``received``: their message may be lost."""
        with self.runtime.session() as session:
            return list(session.scalars(select(Document.id).where(
                Document.migration_run_id == self.id, Document.status == "received")))

    def finish(self, status: str) -> None:
        if self._pending:
            self.flush()
        with self.runtime.session() as session:
            session.execute(
                update(MigrationRun).where(MigrationRun.id == self.id).values(
                    status=status, owner=None, updated_at=utcnow(),
                    finished_at=utcnow() if status == "finished" else None))
            session.commit()

    def run_row(self) -> MigrationRun:
        with self.runtime.session() as session:
            return session.get(MigrationRun, self.id)


def _digest(entry: Entry) -> str:
    return hashlib.sha256(key_bytes(entry)).hexdigest()


def _insert_ignoring_duplicates(session: Any) -> Any:
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(MigrationEntry).on_conflict_do_nothing(
        index_elements=["run_id", "entry_key"])


def owner_name(pid: int) -> str:
    """``host:pid``, with ``/start`` (the process's start time) when it is known."""
    started = liveness.process_start(pid)
    suffix = f"/{started}" if started is not None else ""
    return f"{socket.gethostname()}:{pid}{suffix}"


def _check_owner(run: MigrationRun) -> None:
    if run.status != "running" or not run.owner:
        return
    host, _, process = run.owner.rpartition(":")
    pid, _, started = process.partition("/")
    if host == socket.gethostname():
        if pid.isdigit() and int(pid) != os.getpid() \
                and liveness.is_running(int(pid), int(started) if started.isdigit() else None):
            raise RunBusy(f"this migration is already running (process {pid})")
        return
    age = (utcnow() - run.updated_at).total_seconds()
    if age < STALE_OWNER_SECONDS:
        raise RunBusy(f"this migration is already running on {host} (process {pid})")
