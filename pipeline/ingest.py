"""Turning one spooled file into a stored document: the steps, in order.

    claim      take the document's lease (a second delivery stops here)
    inspect    size, SHA-256 and the type detected from the content
    dedupe     the same content already stored -> ``duplicate``, nothing uploaded
    read       PDF facts, text, thumbnail, in the sandbox
    upload     original and thumbnail, encrypted, checksums verified by the store
    commit     the row becomes ``stored`` (or ``duplicate`` if another won the race)
    clean up   the spooled copy goes, only now

A permanent error fails the document and quarantines its file; a transient one
gives the lease back and is raised for the task to retry.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from pipeline import documents, failpoints, keys
from pipeline.db.models import FINAL_STATUSES, Document
from pipeline.detect import HEAD_BYTES, CorruptContainer, detect, is_allowed
from pipeline.documents import Actor, DuplicateContent
from pipeline.errors import (
    EmptyFile,
    PermanentError,
    TooLarge,
    TransientError,
    Unreadable,
    UnsupportedType,
)
from pipeline.extract import Extraction
from pipeline.quarantine import quarantine
from pipeline.runtime import Runtime
from pipeline.storage import StoredObject

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass
class Facts:
    """What the inspection step learned about the file."""

    size: int
    sha256: str
    mime_type: str | None = None
    charset: str | None = None
    mismatch: str | None = None  # the type the file's name claimed, when it differs

    def columns(self) -> dict[str, Any]:
        return {"file_size": self.size, "sha256": self.sha256, "mime_type": self.mime_type}


@dataclass
class Run:
    runtime: Runtime
    document: Row  # the claimed row (documents.claim)
    actor: Actor
    session: Session  # the task's own: claim, dedupe check, final commit
    facts: Facts | None = None
    uploaded: list[str] = field(default_factory=list)

    @property
    def id(self) -> uuid.UUID:
        return self.document.id


def ingest_document(runtime: Runtime, document_id: uuid.UUID, actor: Actor) -> str:
    """Process one document; returns its final status, or "skipped"."""
    try:
        with runtime.task_session() as session:
            return _ingest(runtime, session, document_id, actor)
    except (OperationalError, InterfaceError) as error:
        # The task's connection could not be had or was lost (the claim or the
        # checkout itself): the database is away, the document waits for a retry.
        raise TransientError(f"database unavailable: {type(error).__name__}") from error


def _ingest(runtime: Runtime, session: Session, document_id: uuid.UUID, actor: Actor) -> str:
    document = _claim(runtime, session, document_id, actor)
    if document is None:
        log.info("ingest skipped document_id=%s reason=final_or_leased", document_id)
        return "skipped"

    run = Run(runtime, document, actor, session)
    failpoints.reach(runtime.settings, "ingest.after_claim")
    try:
        return _process(run)
    except PermanentError as error:
        return _fail(run, error)
    except TransientError as error:
        _give_back(run, str(error))
        raise
    except FileNotFoundError:
        # Another delivery of this work finished first and removed the spooled copy.
        return _after_spool_vanished(run)
    except (OperationalError, InterfaceError) as error:
        # The database went away mid-way: as transient as a bucket outage.
        _give_back(run, f"database: {type(error).__name__}")
        raise TransientError(f"database unavailable: {type(error).__name__}") from error


def _claim(runtime: Runtime, session: Session, document_id: uuid.UUID,
           actor: Actor) -> Row | None:
    document = documents.claim(session, document_id, actor, runtime.settings.lease_seconds)
    if document is None:
        _tidy_finished(runtime, documents.get(session, document_id))
        session.rollback()
    return document


def _tidy_finished(runtime: Runtime, document: Document | None) -> None:
    """A worker that died after the commit left the spooled copy behind: remove it."""
    if document is None or document.status not in ("stored", "duplicate"):
        return
    if document.spool_ref and runtime.spool.exists(document.spool_ref):
        runtime.spool.remove(document.spool_ref)
        log.info("removed leftover spool copy document_id=%s", document.id)


def _after_spool_vanished(run: Run) -> str:
    with run.runtime.session() as session:
        current = documents.get(session, run.id)
    if current is not None and current.status in FINAL_STATUSES:
        _delete_uploaded_unless_kept(run, current)
        log.info("ingest superseded document_id=%s status=%s", run.id, current.status)
        return "skipped"
    return _fail(run, Unreadable("the spooled copy disappeared while it was processed"))


def _delete_uploaded_unless_kept(run: Run, current: Document) -> None:
    # Keys derive from the document id, so a finished twin uploaded the same keys;
    # only keys the stored row does not name would be orphans.
    kept = {current.s3_key, current.thumbnail_key}
    run.uploaded = [key for key in run.uploaded if key not in kept]
    _delete_uploaded(run)


def _process(run: Run) -> str:
    path = _locate(run)
    run.facts = facts = inspect(path, run.document.original_name, run.runtime.settings, run)
    _note_type_mismatch(run, path)

    original = _find_original(run, facts.sha256)
    if original is not None:
        return _commit_duplicate(run, original)

    stored, extraction = _read_while_uploading(run, path)
    thumbnail = _upload_thumbnail(run, extraction)
    log.info("uploaded document_id=%s s3_key=%s bytes=%d thumbnail=%s",
             run.id, stored.key, facts.size, thumbnail is not None)
    failpoints.reach(run.runtime.settings, "ingest.after_upload")
    return _commit(run, stored, thumbnail, extraction)


def _locate(run: Run) -> Path:
    spool = run.runtime.spool
    if not spool.exists(run.document.spool_ref):
        raise Unreadable("the spooled copy of this document is missing")
    return spool.local_path(run.document.spool_ref)


def hash_file(path: Path) -> tuple[str, int, bytes]:
    """SHA-256 (hex), size and the first HEAD_BYTES of the file, in one read."""
    digest, size, head = hashlib.sha256(), 0, b""
    with path.open("rb") as source:
        while chunk := source.read(HASH_CHUNK_BYTES):
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, head


def inspect(path: Path, name: str, settings: Any, run: Run | None = None) -> Facts:
    """Size, SHA-256 and detected type, in one read of the file.

    They are on ``run.facts`` as soon as known, so a refused file keeps them too.
    """
    sha256, size, head = hash_file(path)
    facts = Facts(size=size, sha256=sha256)
    if run is not None:
        run.facts = facts

    if size == 0:
        raise EmptyFile("the file is empty (0 bytes)")
    if size > settings.max_file_size:
        raise TooLarge(f"{size} bytes is over the limit of {settings.max_file_size}")

    try:
        detection = detect(path, head, name)
    except CorruptContainer as error:
        facts.mime_type = error.mime_type
        raise
    facts.mime_type, facts.charset = detection.mime_type, detection.charset
    facts.mismatch = detection.extension_mismatch
    if not is_allowed(detection.mime_type, settings.allowed_types):
        raise UnsupportedType(f"{detection.mime_type} is not an accepted type")
    return facts


def _note_type_mismatch(run: Run, path: Path) -> None:
    claimed = run.facts.mismatch
    if claimed is None:
        return
    log.warning("type differs from name document_id=%s name_says=%s content_is=%s",
                run.id, claimed, run.facts.mime_type)
    with run.runtime.session() as session:
        documents.record_event(session, run.id, "type_mismatch", run.actor,
                               name_says=claimed, content_is=run.facts.mime_type)
        session.commit()


def _find_original(run: Run, sha256: str) -> uuid.UUID | None:
    original = documents.find_stored(run.session, sha256)
    run.session.rollback()  # a read: nothing to keep open while the file is read
    return original if original != run.id else None


def _read_while_uploading(run: Run, path: Path) -> tuple[StoredObject, Extraction]:
    """The sandbox reads while the original goes up: two processes, two cores.

    The reader's verdict still comes first: a file it refuses fails as before
    (the original just uploaded is deleted with the rest), and only a file it
    accepts can be held back by an upload error.
    """
    sandbox, facts = run.runtime.sandbox, run.facts
    sandbox.start(path, facts.mime_type, facts.charset, run.runtime.settings.thumbnail_max_px)
    try:
        stored = _upload_original(run, path)
    except (TransientError, OSError):
        sandbox.finish()
        raise
    except BaseException:
        sandbox.stop()
        raise
    return stored, sandbox.finish()


def _metadata(run: Run) -> dict[str, str]:
    return {"document-id": str(run.id)}


def _upload_original(run: Run, path: Path) -> StoredObject:
    facts = run.facts
    key = keys.original_key(run.runtime.settings.storage.prefix, run.id, facts.mime_type)
    stored = run.runtime.store.put_file(key, path, size=facts.size, sha256=facts.sha256,
                                        content_type=facts.mime_type, metadata=_metadata(run))
    run.uploaded.append(key)
    return stored


def _upload_thumbnail(run: Run, extraction: Extraction) -> StoredObject | None:
    if not extraction.thumbnail:
        return None
    key = keys.thumbnail_key(run.runtime.settings.storage.prefix, run.id)
    thumbnail = run.runtime.store.put_bytes(
        key, extraction.thumbnail,
        sha256=hashlib.sha256(extraction.thumbnail).hexdigest(),
        content_type=keys.THUMBNAIL_TYPE, metadata=_metadata(run),
    )
    run.uploaded.append(key)
    return thumbnail


def _commit(run: Run, stored: StoredObject, thumbnail: StoredObject | None,
            extraction: Extraction) -> str:
    text = extraction.text
    values = {
        **run.facts.columns(),
        "file_name": keys.stored_file_name(run.id, run.facts.mime_type),
        "s3_bucket": run.runtime.store.bucket,
        "s3_key": stored.key,
        "thumbnail_key": thumbnail.key if thumbnail else None,
        "page_count": extraction.page_count,
        "encrypted": extraction.encrypted,
        "text_length": len(text) if text is not None else None,
    }
    try:
        won = documents.mark_stored(run.session, run.id, run.actor, values, text)
    except DuplicateContent:
        # Another document with the same bytes committed first: ours becomes its
        # duplicate and our upload would be an orphan, so it goes.
        _delete_uploaded(run)
        original = _find_original(run, run.facts.sha256)
        if original is None:
            raise TransientError("content conflict without a stored original") from None
        return _commit_duplicate(run, original)

    if not won:
        log.info("ingest superseded document_id=%s", run.id)
        return "skipped"
    failpoints.reach(run.runtime.settings, "ingest.after_commit")
    _clean_up(run)
    log.info("stored document_id=%s mime=%s pages=%s text_length=%s",
             run.id, run.facts.mime_type, extraction.page_count, values["text_length"])
    return "stored"


def _commit_duplicate(run: Run, original: uuid.UUID) -> str:
    won = documents.mark_duplicate(run.session, run.id, run.actor, original, {
        **run.facts.columns(),
        "file_name": keys.stored_file_name(run.id, run.facts.mime_type),
    })
    if won:
        _clean_up(run)
        log.info("duplicate document_id=%s duplicate_of=%s", run.id, original)
    return "duplicate" if won else "skipped"


def _fail(run: Run, error: PermanentError) -> str:
    facts = run.facts.columns() if run.facts else {}
    _delete_uploaded(run)
    where = quarantine(run.runtime.spool, run.document, run.runtime.settings.quarantine,
                       error.code, error.message, facts)
    with run.runtime.session() as session:
        documents.mark_failed(session, run.id, run.actor, error.code, error.message,
                              facts, where)
    log.info("failed document_id=%s code=%s reason=%s", run.id, error.code, error.message)
    return "failed"


def _give_back(run: Run, reason: str) -> None:
    log.warning("transient error document_id=%s reason=%s", run.id, reason)
    try:
        with run.runtime.session() as session:
            documents.release(session, run.id, run.actor, reason)
    except Exception:  # noqa: BLE001 - the lease then simply expires
        log.warning("could not release lease document_id=%s", run.id, exc_info=True)


def _delete_uploaded(run: Run) -> None:
    for key in run.uploaded:
        try:
            run.runtime.store.delete(key)
        except TransientError:
            log.warning("could not delete object document_id=%s s3_key=%s", run.id, key)
    run.uploaded.clear()


def _clean_up(run: Run) -> None:
    run.runtime.spool.remove(run.document.spool_ref)
