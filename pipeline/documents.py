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

from sqlalchemy import Row, bindparam, delete, func, insert, or_, select, update
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
    # What a worker needs of the row; a Core row, not an entity: the ORM's
    # identity map and loaders cost more than the statement.
    .returning(*(_DOCUMENTS.c[name] for name in (
        "id", "status", "original_name", "source", "source_path", "spool_ref", "attempts")))
)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching values that start with ``prefix``, taken literally."""
    for special in (LIKE_ESCAPE, "%", "_"):
        prefix = prefix.replace(special, LIKE_ESCAPE + special)
    return prefix + "%"


def record_event(session: Session, document_id: uuid.UUID, event: str, actor: Actor,
                 **detail: Any) -> None:
    # A plain INSERT in the caller's transaction: the ORM's unit of work would add
    # a flush and a RETURNING of the id that nobody reads, on every change.
    session.execute(_INSERT_EVENT, {"document_id": document_id,
                                    **_event_values(event, actor, detail)})


def _event_values(event: str, actor: Actor, detail: dict[str, Any]) -> dict[str, Any]:
    return {"at": utcnow(), "event": event, "worker": actor.worker,
            "task_id": actor.task_id, "detail": detail or None}


def _with_event(changed: Any, name: str) -> Any:
    """``changed`` (an UPDATE … RETURNING id) and the INSERT of its event, as one statement.

    PostgreSQL runs both in one statement, so the change and its audit event
    commit together even on an autocommit connection, in one round trip; the
    event is written only when the UPDATE matched a row.
    """
    changed = changed.cte(name)
    event = insert(_EVENTS).from_select(
        ["document_id", "at", "event", "worker", "task_id", "detail"],
        select(changed.c.id, *(bindparam(key, type_=_EVENTS.c[key].type)
                               for key in ("at", "event", "worker", "task_id", "detail"))),
    ).cte(f"{name}_event")
    return changed, event


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


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
          lease_seconds: int) -> Row | None:
    """Take the lease on a document; None when it is final or leased to a live task.

    A redelivery of the same task (same task id) takes the lease over at once:
    the broker only redelivers a message whose worker is gone. The row returned
    has the columns a worker needs (id, status, names, spool_ref, attempts).
    """
    now = utcnow()
    params = {
        "_document_id": document_id, "_now": now, "_owner": actor.lease_owner,
        "_until": now + timedelta(seconds=lease_seconds),
        "_same_task": _like_prefix(f"{actor.task_id}@"),
    }
    if _is_postgres(session):
        # Lease and its event in one round trip.
        params.update(_event_values("processing", actor, {}))
        document = session.execute(_claim_with_event(), params).one_or_none()
    else:
        document = session.execute(_CLAIM, params).one_or_none()
        if document is not None:
            record_event(session, document_id, "processing", actor)
    if document is None:
        session.rollback()
        return None
    session.commit()
    return document


@functools.cache
def _claim_with_event() -> Any:
    claimed, event = _with_event(_CLAIM, "claimed")
    return select(claimed).add_cte(event)


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
    done = session.execute(_FINISH, _finish_params(document_id, actor, status, values)).rowcount
    return done == 1


def _finish_params(document_id: uuid.UUID, actor: Actor, status: str,
                   values: dict[str, Any]) -> dict[str, Any]:
    return {"_document_id": document_id, "_lease_owner": actor.lease_owner,
            "status": status, "lease_owner": None, "lease_until": None,
            "updated_at": utcnow(), **values}


def _finish_with_event(session: Session, document_id: uuid.UUID, actor: Actor, status: str,
                       values: dict[str, Any], detail: dict[str, Any],
                       text: str | None = None) -> bool:
    """PostgreSQL: the final status, the text and the event in one statement.

    One statement is one transaction even in autocommit, so the row, its text
    and its event are written together or not at all (a unique-index conflict
    undoes all three), in one round trip instead of five.
    """
    params = {**_finish_params(document_id, actor, status, values),
              **_event_values(status, actor, detail)}
    if text is not None:
        params["_content"] = text
    statement = _finish_statement(tuple(sorted(values)), text is not None)
    return session.execute(statement, params).scalar_one() == 1


@functools.cache
def _finish_statement(columns: tuple[str, ...], with_text: bool) -> Any:
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    names = ("status", "lease_owner", "lease_until", "updated_at", *columns)
    finished, event = _with_event(
        _FINISH.values({name: bindparam(name, type_=_DOCUMENTS.c[name].type)
                        for name in names}).returning(_DOCUMENTS.c.id),
        "finished",
    )
    statement = select(func.count()).select_from(finished).add_cte(event)
    if with_text:
        upsert = pg_insert(_TEXTS).from_select(
            ["document_id", "content"],
            select(finished.c.id, bindparam("_content", type_=_TEXTS.c.content.type)),
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[_TEXTS.c.document_id], set_={"content": upsert.excluded.content})
        statement = statement.add_cte(upsert.cte("finished_text"))
    return statement


def mark_stored(session: Session, document_id: uuid.UUID, actor: Actor,
                values: dict[str, Any], text: str | None) -> bool:
    """Commit the document as stored; raise DuplicateContent when the content won elsewhere."""
    detail = {"s3_key": values["s3_key"], "thumbnail_key": values.get("thumbnail_key")}
    try:
        if _is_postgres(session):
            won = _finish_with_event(session, document_id, actor, "stored", values, detail, text)
        else:
            won = _finish_stored_in_steps(session, document_id, actor, values, text, detail)
        if not won:
            session.rollback()
            return False
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise DuplicateContent(values.get("sha256")) from error
    return True


def _finish_stored_in_steps(session: Session, document_id: uuid.UUID, actor: Actor,
                            values: dict[str, Any], text: str | None,
                            detail: dict[str, Any]) -> bool:
    if not _finish(session, document_id, actor, "stored", values):
        return False
    if text is not None:
        _save_text(session, document_id, text)
    record_event(session, document_id, "stored", actor, **detail)
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
    values = {**values, "duplicate_of": original_id}
    detail = {"duplicate_of": str(original_id)}
    if _is_postgres(session):
        won = _finish_with_event(session, document_id, actor, "duplicate", values, detail)
    else:
        won = _finish(session, document_id, actor, "duplicate", values)
        if won:
            record_event(session, document_id, "duplicate", actor, **detail)
    if not won:
        session.rollback()
        return False
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
