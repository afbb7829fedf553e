"""Sending quarantined documents through the pipeline again, under the same id.

For a file refused for a reason that has since gone away (a limit raised, a type
allowed, a reader that timed out on an overloaded box): its quarantined copy goes
back into the spool, the row goes from ``failed`` back to ``received`` with a
``retried`` event, and a worker takes it like any other. The document keeps its
id, so a client polling it sees it end ``stored`` (or ``failed`` again, quarantined
again with the new reason).

The order keeps the file safe at every step: it enters the spool first (a rename
on one filesystem, else a copy made durable), then the row changes, and only then
do the quarantined copy and its ``.error.json`` go. A row that can no longer
change (someone else retried or deleted it) puts the file back. A retry cut short
after the file entered the spool is finished by running it again: the spooled
copy is found and used.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline import documents
from pipeline.db.models import Document, DocumentEvent, utcnow
from pipeline.documents import Actor
from pipeline.quarantine import SIDECAR_SUFFIX, quarantine_name
from pipeline.runtime import Runtime
from pipeline.spool import SpoolMisplaced

log = logging.getLogger(__name__)

QUEUED, NOT_FAILED, NO_FILE, UNKNOWN = "queued", "not_failed", "no_file", "unknown"
COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RetryOutcome:
    document_id: uuid.UUID
    outcome: str  # QUEUED, NOT_FAILED, NO_FILE or UNKNOWN
    detail: str = ""


def failed_with_code(runtime: Runtime, code: str) -> list[uuid.UUID]:
    """Every live failed document with error ``code``, oldest first."""
    with runtime.session() as session:
        return list(session.scalars(
            select(Document.id)
            .where(Document.status == "failed", Document.is_active.is_(True),
                   Document.error_code == code)
            .order_by(Document.uploaded_at, Document.id)))


def retry(runtime: Runtime, document_ids: Iterable[uuid.UUID], actor: Actor,
          enqueue: Callable[[uuid.UUID, str], None]) -> Iterator[RetryOutcome]:
    """Retry each document in turn; yields what became of each."""
    for document_id in document_ids:
        outcome = _retry_one(runtime, document_id, actor)
        if outcome.outcome == QUEUED:
            enqueue(document_id, str(document_id))
        yield outcome


def _retry_one(runtime: Runtime, document_id: uuid.UUID, actor: Actor) -> RetryOutcome:
    with runtime.session() as session:
        document = documents.get(session, document_id)
        if document is None:
            return RetryOutcome(document_id, UNKNOWN, "no such document")
        if document.status != "failed" or not document.is_active:
            state = document.status if document.is_active else "deleted"
            return RetryOutcome(document_id, NOT_FAILED, f"it is {state}")
        kept = _quarantined_copy(session, runtime, document)
        code = document.error_code

    ref = str(document_id)
    already_spooled = runtime.spool.exists(ref)  # an earlier retry cut short
    if kept is None and not already_spooled:
        return RetryOutcome(document_id, NO_FILE,
                            "no quarantined file (it was never spooled, or was moved)")

    moved = False if already_spooled else _into_spool(runtime, kept, document_id)
    if not _reopen(runtime, document_id, actor, code, kept):
        _undo(runtime, ref, kept, moved)
        return RetryOutcome(document_id, NOT_FAILED, "it changed while it was retried")

    _clear_quarantine(kept, moved)
    log.info("retried document_id=%s previous_code=%s from=%s", document_id, code, kept)
    return RetryOutcome(document_id, QUEUED, f"was {code}")


def _quarantined_copy(session: Session, runtime: Runtime, document: Document) -> Path | None:
    """The file the last failure quarantined: where its event says, else its usual name."""
    recorded = session.scalars(
        select(DocumentEvent.detail)
        .where(DocumentEvent.document_id == document.id, DocumentEvent.event == "failed")
        .order_by(DocumentEvent.at.desc(), DocumentEvent.id.desc()).limit(1)).first()
    candidates = []
    if recorded and recorded.get("quarantined_as"):
        candidates.append(Path(recorded["quarantined_as"]))
    candidates.append(runtime.settings.quarantine / quarantine_name(document))
    return next((path for path in candidates if path.is_file()), None)


def _into_spool(runtime: Runtime, kept: Path, document_id: uuid.UUID) -> bool:
    """Put the quarantined file in the spool; True when it was moved (not copied)."""
    try:
        runtime.spool.claim(kept, document_id)
        return True
    except SpoolMisplaced:
        # Quarantine on another filesystem: copy, made durable by the spool.
        with kept.open("rb") as source:
            runtime.spool.receive(document_id,
                                  iter(lambda: source.read(COPY_CHUNK_BYTES), b""),
                                  max_size=kept.stat().st_size)
        return False


def _reopen(runtime: Runtime, document_id: uuid.UUID, actor: Actor, code: str | None,
            kept: Path | None) -> bool:
    with runtime.session() as session:
        changed = session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status == "failed",
                   Document.is_active.is_(True))
            .values(status="received", spool_ref=str(document_id), error_code=None,
                    error_message=None, lease_owner=None, lease_until=None,
                    updated_at=utcnow())).rowcount
        if changed != 1:
            session.rollback()
            return False
        documents.record_event(session, document_id, "retried", actor,
                               previous_code=code, quarantined_as=str(kept) if kept else None)
        session.commit()
    return True


def _undo(runtime: Runtime, ref: str, kept: Path | None, moved: bool) -> None:
    if moved and kept is not None:
        if runtime.spool.unclaim(ref, kept):
            return
    if kept is not None and kept.exists():
        runtime.spool.remove(ref)


def _clear_quarantine(kept: Path | None, moved: bool) -> None:
    if kept is None:
        return
    if not moved:
        kept.unlink(missing_ok=True)
    kept.with_name(kept.name + SIDECAR_SUFFIX).unlink(missing_ok=True)
