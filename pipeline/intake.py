"""How files enter Sluice: claimed from the inbox, or streamed in.

Either way the document's row is committed before anyone is asked to process
it, so a crash never leaves a file that Sluice holds without a row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline import documents
from pipeline.db.models import Document
from pipeline.documents import Actor
from pipeline.names import clean_name, clean_path
from pipeline.runtime import Runtime
from pipeline.spool import ClaimLost

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1024 * 1024


class WriterArrived(Exception):
    """A process opened the file for writing while it was being claimed; it is back."""


@dataclass
class Intake:
    """What the person or program handing a file over told us about it."""

    source: str
    original_name: str
    source_path: str | None = None
    category: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    uploaded_by: str | None = None
    content_type_id: int | None = None
    object_id: str | None = None
    source_modified_at: datetime | None = None
    migration_run_id: uuid.UUID | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "original_name": clean_name(self.original_name),
            "source_path": clean_path(self.source_path) if self.source_path else None,
            "category": self.category, "description": self.description,
            "tags": list(self.tags), "uploaded_by": self.uploaded_by,
            "content_type_id": self.content_type_id, "object_id": self.object_id,
            "source_modified_at": self.source_modified_at,
            "migration_run_id": self.migration_run_id,
        }


def claim_from_inbox(runtime: Runtime, path: Path, intake: Intake, actor: Actor,
                     writer_waiting: Callable[[], bool] | None = None) -> uuid.UUID | None:
    """Take a settled file out of the inbox; None if another watcher took it first.

    Row first, then the atomic rename, then the row learns where the file is: a
    crash at any point leaves the file in the inbox, or in the spool with its row.
    ``writer_waiting`` says, after the rename, whether a process has meanwhile begun
    opening the file for writing (see watchers/writers.py); if so the file goes back
    to the inbox and WriterArrived is raised.
    """
    document_id = uuid.uuid4()
    with runtime.session() as session:
        documents.add_received(session, actor, spool_ref=None, id=document_id,
                               **intake.columns())
        session.commit()

    try:
        ref = runtime.spool.claim(path, document_id)
        if writer_waiting is not None and writer_waiting():
            _put_back(runtime, ref, path)
    except BaseException as error:
        with runtime.session() as session:
            documents.forget_unclaimed(session, document_id)
            session.commit()
        if isinstance(error, ClaimLost):
            log.info("claim lost path=%s reason=taken_by_another_watcher", clean_path(str(path)))
            return None
        raise

    with runtime.session() as session:
        documents.attach_spool(session, document_id, ref, actor)
        session.commit()
    log.info("received document_id=%s source=watch path=%s", document_id,
             clean_path(str(path)))
    return document_id


def _put_back(runtime: Runtime, ref: str, path: Path) -> None:
    # The writer's open found the file by its inbox name before the rename and now
    # waits for our lease: its bytes will land in this file wherever it is, so it must
    # be in the inbox again when the writer goes on. The caller then drops the row; a
    # crash in between is one the sweeper already settles (file in the spool: the row
    # is adopted; file back in the inbox: the row is dropped).
    if runtime.spool.unclaim(ref, path):
        raise WriterArrived(str(path))
    log.warning("claim kept path=%s reason=writer_waiting_but_name_taken", clean_path(str(path)))


def receive_stream(runtime: Runtime, chunks: Iterable[bytes], intake: Intake,
                   actor: Actor, max_size: int | None = None,
                   document_id: uuid.UUID | None = None) -> Document:
    """Spool a stream (upload, CLI, migration) and record it as ``received``.

    A caller that must recognise its own document after a crash (the migration)
    passes a ``document_id`` it can derive again.
    """
    if document_id is None:
        document_id = uuid.uuid4()
    else:
        # A derived id is taken again after a crash: what the dead process had
        # half-written under it is garbage, and would block the new attempt.
        runtime.spool.discard_incoming(document_id)
    limit = max_size or runtime.settings.max_file_size
    spooled = runtime.spool.receive(document_id, chunks, limit)

    try:
        with runtime.session() as session:
            document = documents.add_received(
                session, actor, spool_ref=spooled.ref, id=document_id,
                file_size=spooled.size, sha256=spooled.sha256, **intake.columns(),
            )
            session.commit()
    except BaseException:
        runtime.spool.remove(spooled.ref)
        raise
    log.info("received document_id=%s source=%s bytes=%d", document_id, intake.source,
             spooled.size)
    return document


def receive_file(runtime: Runtime, path: Path, intake: Intake, actor: Actor) -> Document:
    """Copy a file into the spool (the original stays where it is)."""
    with path.open("rb") as source:
        return receive_stream(runtime, iter(lambda: source.read(READ_CHUNK_BYTES), b""),
                              intake, actor)
