"""Reading and changing document rows; every change leaves an event behind.

A document moves ``received`` -> ``processing`` -> ``stored`` | ``duplicate`` |
``failed``. ``processing`` is a lease: the worker that holds it owns the document
until ``lease_until``, so a second delivery of the same work cannot run beside
it, and a worker that died loses the document to the next one.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.db.models import Document, DocumentEvent, DocumentText, utcnow

log = logging.getLogger(__name__)


class DuplicateContent(Exception):
    """Another live document already stores this content (unique index)."""


@dataclass(frozen=True)
class Actor:
    """Who acts: the process (host:pid) and, in a worker, the Celery task id."""

    worker: str
    task_id: str | None = None

    @classmethod
    def here(cls, task_id: str | None = None) -> Actor:
        return cls(f"{socket.gethostname()}:{os.getpid()}", task_id)

    @property
    def lease_owner(self) -> str:
        return f"{self.task_id or '-'}@{self.worker}"


# Statements run for every document, built once: building one costs more CPU
# than sending it. Parameters are bound at execution; Core, not the ORM, since
# no entity is loaded.
_DOCUMENTS, _EVENTS, _TEXTS = Document.__table__, DocumentEvent.__table__, DocumentText.__table__
_INSERT_EVENT = insert(_EVENTS)
LIKE_ESCAPE = "/"
_FINISH = (
    update(_DOCUMENTS)
    .where(_DOCUMENTS.c.id == bindparam("_document_id"),
           _DOCUMENTS.c.status == "processing",
           _DOCUMENTS.c.lease_owner == bindparam("_lease_owner"))
)
_FIND_STORED = (
    select(_DOCUMENTS.c.id)
    .where(_DOCUMENTS.c.sha256 == bindparam("sha256"), _DOCUMENTS.c.status == "stored",
           _DOCUMENTS.c.is_active.is_(True))
    .limit(1)
)


_CLAIM = (
    update(_DOCUMENTS)
    .where(
        _DOCUMENTS.c.id == bindparam("_document_id"),
        _DOCUMENTS.c.spool_ref.is_not(None),
        or_(
            _DOCUMENTS.c.status == "received",
            (_DOCUMENTS.c.status == "processing") & or_(
                _DOCUMENTS.c.lease_until < bindparam("_now"),
                _DOCUMENTS.c.lease_owner.like(bindparam("_same_task"), escape=LIKE_ESCAPE),
            ),
        ),
    )
    .values(status="processing", lease_owner=bindparam("_owner"),
            lease_until=bindparam("_until"), attempts=_DOCUMENTS.c.attempts + 1,
            updated_at=bindparam("_now"))
    .returning(*_DOCUMENTS.c)
)
_CLAIM_AS_DOCUMENT = (select(Document).from_statement(_CLAIM)
                      .execution_options(populate_existing=True))


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching values that start with ``prefix``, taken literally."""
    for special in (LIKE_ESCAPE, "%", "_"):
        prefix = prefix.replace(special, LIKE_ESCAPE + special)
    return prefix + "%"


def record_event(session: Session, document_id: uuid.UUID, event: str, actor: Actor,
                 **detail: Any) -> None:
    # A plain INSERT in the caller's transaction: the ORM's unit of work would add
    # a flush and a RETURNING of the id that nobody reads, on every change.
    session.execute(_INSERT_EVENT, {
        "document_id": document_id, "event": event, "worker": actor.worker,
        "task_id": actor.task_id, "detail": detail or None,
    })


def get(session: Session, document_id: uuid.UUID) -> Document | None:
    return session.get(Document, document_id)


def add_received(session: Session, actor: Actor, *, spool_ref: str | None,
                 **fields: Any) -> Document:
    """A new document in ``received``; with a spool_ref it also gets its event."""
    document = Document(status="received", spool_ref=spool_ref, attempts=0,
                        is_active=True, tags=list(fields.pop("tags", None) or []),
                        file_name=str(fields["id"]), **fields)
    session.add(document)
    if spool_ref is not None:
        session.flush()
        record_event(session, document.id, "received", actor, source=document.source)
    return document


def attach_spool(session: Session, document_id: uuid.UUID, spool_ref: str,
                 actor: Actor) -> None:
    session.execute(update(Document).where(Document.id == document_id)
                    .values(spool_ref=spool_ref, updated_at=utcnow()))
    record_event(session, document_id, "received", actor, source="watch")


def forget_unclaimed(session: Session, document_id: uuid.UUID) -> None:
    """Drop a row written for a file that another watcher claimed first."""
    session.execute(delete(Document).where(Document.id == document_id,
                                           Document.spool_ref.is_(None)))


def claim(session: Session, document_id: uuid.UUID, actor: Actor,
          lease_seconds: int) -> Document | None:
    """Take the lease on a document; None when it is final or leased to a live task.

    A redelivery of the same task (same task id) takes the lease over at once:
    the broker only redelivers a message whose worker is gone.
    """
    now = utcnow()
    # One round trip takes the lease and reads the row back (RETURNING).
    document = session.scalars(_CLAIM_AS_DOCUMENT, {
        "_document_id": document_id, "_now": now, "_owner": actor.lease_owner,
        "_until": now + timedelta(seconds=lease_seconds),
        "_same_task": _like_prefix(f"{actor.task_id}@"),
    }).one_or_none()
    if document is None:
        session.rollback()
        return None
    record_event(session, document_id, "processing", actor)
    session.commit()
    return document


def release(session: Session, document_id: uuid.UUID, actor: Actor, reason: str) -> None:
    """Give the lease back after a transient error: the document waits for a retry."""
    session.rollback()
    session.execute(
        update(Document)
        .where(Document.id == document_id, Document.status == "processing",
               Document.lease_owner == actor.lease_owner)
        .values(status="received", lease_owner=None, lease_until=None, updated_at=utcnow())
    )
    record_event(session, document_id, "retry", actor, reason=reason[:500])
    session.commit()


def find_stored(session: Session, sha256: str) -> uuid.UUID | None:
    return session.scalar(_FIND_STORED, {"sha256": sha256})


def _finish(session: Session, document_id: uuid.UUID, actor: Actor, status: str,
            values: dict[str, Any]) -> bool:
    """Move a document we hold to a final status; False if someone else finished it."""
    done = session.execute(_FINISH, {
        "_document_id": document_id, "_lease_owner": actor.lease_owner,
        "status": status, "lease_owner": None, "lease_until": None,
        "updated_at": utcnow(), **values,
    }).rowcount
    return done == 1


def mark_stored(session: Session, document_id: uuid.UUID, actor: Actor,
                values: dict[str, Any], text: str | None) -> bool:
    """Commit the document as stored; raise DuplicateContent when the content won elsewhere."""
    try:
        if not _finish(session, document_id, actor, "stored", values):
            session.rollback()
            return False
        if text is not None:
            _save_text(session, document_id, text)
        record_event(session, document_id, "stored", actor, s3_key=values["s3_key"],
                     thumbnail_key=values.get("thumbnail_key"))
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise DuplicateContent(values.get("sha256")) from error
    return True


def _save_text(session: Session, document_id: uuid.UUID, text: str) -> None:
    """Insert or replace the document's text in one statement (merge reads first)."""
    statement = _upsert_text(session.get_bind().dialect.name)
    if statement is None:
        session.merge(DocumentText(document_id=document_id, content=text))
        return
    session.execute(statement, {"document_id": document_id, "content": text})


@functools.cache
def _upsert_text(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        return None
    statement = dialect_insert(_TEXTS)
    return statement.on_conflict_do_update(
        index_elements=[_TEXTS.c.document_id], set_={"content": statement.excluded.content},
    )


def mark_duplicate(session: Session, document_id: uuid.UUID, actor: Actor,
                   original_id: uuid.UUID, values: dict[str, Any]) -> bool:
    if not _finish(session, document_id, actor, "duplicate",
                   {**values, "duplicate_of": original_id}):
        session.rollback()
        return False
    record_event(session, document_id, "duplicate", actor, duplicate_of=str(original_id))
    session.commit()
    return True


def mark_failed(session: Session, document_id: uuid.UUID, actor: Actor, code: str,
                message: str, values: dict[str, Any], quarantined_as: str | None) -> bool:
    session.rollback()
    if not _finish(session, document_id, actor, "failed",
                   {**values, "error_code": code, "error_message": message[:2000]}):
        session.rollback()
        return False
    record_event(session, document_id, "failed", actor, code=code,
                 quarantined_as=quarantined_as)
    session.commit()
    return True


def stale_since(seconds: int) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def add_duplicate(session: Session, actor: Actor, original_id: uuid.UUID,
                  **fields: Any) -> Document:
    """A new document that is at once a ``duplicate`` of a stored one: no work to do."""
    document = Document(status="duplicate", duplicate_of=original_id, spool_ref=None,
                        attempts=0, is_active=True, tags=list(fields.pop("tags", None) or []),
                        **fields)
    session.add(document)
    session.flush()
    record_event(session, document.id, "duplicate", actor, duplicate_of=str(original_id))
    return document
