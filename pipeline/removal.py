"""Deleting a document: soft in the database, hard in the bucket, never losing content.

A delete marks the row inactive and leaves an event; the caller then removes the
objects the row named. Two things keep this from losing anything:

* A stored document whose content other live documents share (their
  ``duplicate`` rows point at it) hands its objects, text and facts to the
  oldest of them, which becomes ``stored``; nothing is removed from the bucket.
* No object that a live document still names is ever listed for removal.

Deleting again is harmless: the row stays as it is, and the objects it named are
listed again, so a removal that the bucket refused the first time can be retried.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from pipeline import documents
from pipeline.db.models import Document, DocumentText, utcnow
from pipeline.documents import Actor

log = logging.getLogger(__name__)

# Columns that travel with the stored content when a duplicate takes over.
CONTENT_COLUMNS = ("s3_bucket", "s3_key", "thumbnail_key", "page_count", "encrypted",
                   "text_length", "mime_type", "file_size", "sha256")


class StillProcessing(Exception):
    """The document is not final yet; a delete now would race the worker."""


@dataclass
class Removal:
    document_id: uuid.UUID
    first_time: bool
    heir: uuid.UUID | None = None
    object_keys: list[str] = field(default_factory=list)


def soft_delete(session: Session, document_id: uuid.UUID, actor: Actor,
                **detail: str) -> Removal | None:
    """Mark the document deleted (committed); None when there is no such document.

    Returns the object keys the caller must now remove from the bucket.
    """
    document = session.get(Document, document_id)
    if document is None:
        return None
    if document.status not in ("stored", "duplicate", "failed"):
        raise StillProcessing(str(document_id))

    removal = Removal(document_id, first_time=_deactivate(session, document_id))
    if removal.first_time:
        if document.status == "stored":
            removal.heir = _hand_over(session, document, actor)
        documents.record_event(session, document_id, "deleted", actor,
                               heir=str(removal.heir) if removal.heir else None, **detail)

    if document.status == "stored" and removal.heir is None:
        named = [key for key in (document.s3_key, document.thumbnail_key) if key]
        removal.object_keys = _not_named_by_live_documents(session, named)
    session.commit()
    log.info("deleted document_id=%s first_time=%s heir=%s objects=%d", document_id,
             removal.first_time, removal.heir, len(removal.object_keys))
    return removal


def _deactivate(session: Session, document_id: uuid.UUID) -> bool:
    now = utcnow()
    changed = session.execute(
        update(Document)
        .where(Document.id == document_id, Document.is_active.is_(True))
        .values(is_active=False, deleted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed == 1


def _hand_over(session: Session, document: Document, actor: Actor) -> uuid.UUID | None:
    """Make the oldest live duplicate the stored document; returns its id."""
    heir = session.scalar(
        select(Document.id)
        .where(Document.duplicate_of == document.id, Document.is_active.is_(True))
        .order_by(Document.uploaded_at, Document.id).limit(1)
    )
    if heir is None:
        return None

    content = {name: getattr(document, name) for name in CONTENT_COLUMNS}
    session.execute(
        update(Document).where(Document.id == heir)
        .values(status="stored", duplicate_of=None, updated_at=utcnow(), **content)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Document)
        .where(Document.duplicate_of == document.id, Document.id != heir)
        .values(duplicate_of=heir, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    text = session.get(DocumentText, document.id)
    if text is not None:
        session.merge(DocumentText(document_id=heir, content=text.content))
    documents.record_event(session, heir, "promoted", actor, took_over_from=str(document.id),
                           s3_key=document.s3_key)
    return heir


def _not_named_by_live_documents(session: Session, keys: list[str]) -> list[str]:
    if not keys:
        return []
    rows = session.execute(
        select(Document.s3_key, Document.thumbnail_key)
        .where(Document.is_active.is_(True),
               or_(Document.s3_key.in_(keys), Document.thumbnail_key.in_(keys)))
    ).all()
    named = {key for row in rows for key in row if key}
    return [key for key in keys if key not in named]
