"""Sending quarantined documents through the pipeline again, under the same id.

For a file refused for a reason that has since gone away (a limit raised, a type
allowed, a reader that timed out on an overloaded box): its quarantined copy goes
back into the spool, the row goes from ``failed`` back to ``received`` with a
``retried`` event, and a worker takes it like any other. The document keeps its
id, so a client polling it sees it end ``stored`` (or ``failed`` again, quarantined
again with the new reason).

One retry of a document runs at a time, across processes and hosts: it first
takes the row's lease (a failed row has none), and only the holder touches the
files. The order keeps the file safe at every step: it enters the spool first (a
rename on one filesystem, else a copy made durable), then the row is reopened,
and only then do the quarantined copy and its ``.error.json`` go. A row that can
no longer be reopened (deleted meanwhile) gets its file back. A retry cut short
after the file entered the spool is finished by running it again: the lease of a
retry process that died on this host is taken over at once (another host's runs
out), and the copy it left in the spool goes back to quarantine first. If a
different file has been put in quarantine meanwhile, that one is retried and the
left-over copy is kept beside it as ``<id>-interrupted-retry``.

Only a regular file is taken from quarantine: a link put in its place would hand
the pipeline whatever it points at. A file whose content differs from the one
that failed (an operator repaired it, say) is taken, and the ``retried`` event
says so (``content_changed``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from pipeline import documents, liveness
from pipeline.db.models import Document, DocumentEvent, utcnow
from pipeline.documents import Actor
from pipeline.quarantine import SIDECAR_SUFFIX, quarantine_name
from pipeline.runtime import Runtime
from pipeline.spool import ClaimLost, SpoolMisplaced

log = logging.getLogger(__name__)

QUEUED, NOT_FAILED, NO_FILE, UNKNOWN, BUSY = (
    "queued", "not_failed", "no_file", "unknown", "busy")
COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RetryOutcome:
    document_id: uuid.UUID
    outcome: str  # QUEUED, NOT_FAILED, NO_FILE, UNKNOWN or BUSY
    detail: str = ""


@dataclass(frozen=True)
class _Failed:
    """What the retry needs to know of the failed row, read before the lease."""

    document_id: uuid.UUID
    code: str | None
    sha256: str | None
    kept: Path | None  # the quarantined file, if a regular file is there
    usual: Path  # where quarantine keeps this document's file


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
        yield _retry_one(runtime, document_id, actor, enqueue)


def _retry_one(runtime: Runtime, document_id: uuid.UUID, actor: Actor,
               enqueue: Callable[[uuid.UUID, str], None]) -> RetryOutcome:
    failed = _read_failed(runtime, document_id)
    if isinstance(failed, RetryOutcome):
        return failed

    # The holder ends in the worker's "@host:pid", like a worker's lease, so a
    # retry that died can be recognised (pipeline.liveness).
    holder = f"retry-{uuid.uuid4().hex[:8]}:{actor.lease_owner}"
    if not _take_lease(runtime, document_id, holder):
        return RetryOutcome(document_id, BUSY, "another retry of it is under way")
    try:
        return _retry_held(runtime, failed, actor, holder, enqueue)
    finally:
        _release_lease(runtime, document_id, holder)


def _read_failed(runtime: Runtime, document_id: uuid.UUID) -> _Failed | RetryOutcome:
    with runtime.session() as session:
        document = documents.get(session, document_id)
        if document is None:
            return RetryOutcome(document_id, UNKNOWN, "no such document")
        if document.status != "failed" or not document.is_active:
            state = document.status if document.is_active else "deleted"
            return RetryOutcome(document_id, NOT_FAILED, f"it is {state}")
        return _Failed(document_id, document.error_code, document.sha256,
                       _quarantined_copy(session, runtime, document),
                       runtime.settings.quarantine / quarantine_name(document))


def _retry_held(runtime: Runtime, failed: _Failed, actor: Actor, holder: str,
                enqueue: Callable[[uuid.UUID, str], None]) -> RetryOutcome:
    document_id, ref = failed.document_id, str(failed.document_id)
    kept = _after_interrupted_retry(runtime, failed)
    if kept is None:
        return RetryOutcome(document_id, NO_FILE,
                            "no quarantined file (it was never spooled, was moved, or is "
                            "not a regular file)")

    changed = bool(failed.sha256 and _sha256_of(kept) != failed.sha256)
    try:
        moved = _into_spool(runtime, kept, document_id)
    except (ClaimLost, FileNotFoundError):
        return RetryOutcome(document_id, NO_FILE, "the quarantined file went away")
    if not _reopen(runtime, failed, kept, actor, holder, changed):
        _undo(runtime, ref, kept, moved)
        return RetryOutcome(document_id, NOT_FAILED, "it changed while it was retried")

    enqueue(document_id, ref)
    _clear_quarantine(kept, moved)
    log.info("retried document_id=%s previous_code=%s from=%s content_changed=%s",
             document_id, failed.code, kept, changed)
    note = "; its quarantined file had been changed" if changed else ""
    return RetryOutcome(document_id, QUEUED, f"was {failed.code}{note}")


def _after_interrupted_retry(runtime: Runtime, failed: _Failed) -> Path | None:
    """The quarantined file to retry, once a copy an interrupted retry left in the
    spool is back in quarantine (or kept beside a different file put there since)."""
    ref = str(failed.document_id)
    if not runtime.spool.exists(ref):
        return failed.kept
    aside = failed.usual.with_name(f"{failed.document_id}-interrupted-retry")
    if failed.kept is None:
        # Something that is not a regular file (a link, a folder) may hold the
        # usual name: it is left alone.
        back = aside if os.path.lexists(failed.usual) else failed.usual
        runtime.spool.move_out(ref, back)
        log.info("interrupted retry: spooled copy back in quarantine document_id=%s",
                 failed.document_id)
        return back
    if _sha256_of(failed.kept) == _sha256_of(runtime.spool.local_path(ref)):
        runtime.spool.remove(ref)
    else:
        runtime.spool.move_out(ref, aside)
        log.warning("interrupted retry: another file is in quarantine now; the spooled "
                    "copy is kept as %s document_id=%s", aside, failed.document_id)
    return failed.kept


def _take_lease(runtime: Runtime, document_id: uuid.UUID, holder: str) -> bool:
    now = utcnow()
    until = now + timedelta(seconds=runtime.settings.lease_seconds)
    with runtime.session() as session:
        taken = session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status == "failed",
                   Document.is_active.is_(True),
                   or_(Document.lease_owner.is_(None), Document.lease_until < now))
            .values(lease_owner=holder, lease_until=until)).rowcount
        if not taken:
            taken = _take_over_from_the_dead(session, document_id, holder, until)
        session.commit()
    return taken == 1


def _take_over_from_the_dead(session: Session, document_id: uuid.UUID, holder: str,
                             until: object) -> int:
    """Take the lease of a retry process of this host that died holding it."""
    current = session.scalar(select(Document.lease_owner).where(Document.id == document_id))
    if not current or not current.startswith("retry-"):
        return 0
    pid = liveness.lease_holder_pid(current, socket.gethostname())
    if pid is None or liveness.is_running(pid):
        return 0
    log.warning("retry lease taken over document_id=%s holder=%s (process gone)",
                document_id, current)
    return session.execute(
        update(Document)
        .where(Document.id == document_id, Document.status == "failed",
               Document.lease_owner == current)
        .values(lease_owner=holder, lease_until=until)).rowcount


def _release_lease(runtime: Runtime, document_id: uuid.UUID, holder: str) -> None:
    # Nothing to do once the row was reopened: reopening clears the lease.
    with runtime.session() as session:
        session.execute(update(Document)
                        .where(Document.id == document_id, Document.lease_owner == holder)
                        .values(lease_owner=None, lease_until=None))
        session.commit()


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
    return next((path for path in candidates if _is_regular_file(path)), None)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _into_spool(runtime: Runtime, kept: Path, document_id: uuid.UUID) -> bool:
    """Put the quarantined file in the spool; True when it was moved (not copied)."""
    try:
        runtime.spool.claim(kept, document_id)
        return True
    except SpoolMisplaced:
        # Quarantine on another filesystem: copy, made durable by the spool. A part
        # left by a retry cut short is ours to replace (the lease is held).
        runtime.spool.discard_incoming(document_id)
        with kept.open("rb") as source:
            runtime.spool.receive(document_id,
                                  iter(lambda: source.read(COPY_CHUNK_BYTES), b""),
                                  max_size=max(1, os.fstat(source.fileno()).st_size))
        return False


def _reopen(runtime: Runtime, failed: _Failed, kept: Path, actor: Actor, holder: str,
            changed: bool) -> bool:
    with runtime.session() as session:
        reopened = session.execute(
            update(Document)
            .where(Document.id == failed.document_id, Document.status == "failed",
                   Document.is_active.is_(True), Document.lease_owner == holder)
            .values(status="received", spool_ref=str(failed.document_id), error_code=None,
                    error_message=None, lease_owner=None, lease_until=None,
                    updated_at=utcnow())).rowcount
        if reopened != 1:
            session.rollback()
            return False
        documents.record_event(session, failed.document_id, "retried", actor,
                               previous_code=failed.code,
                               quarantined_as=str(kept),
                               content_changed=changed)
        session.commit()
    return True


def _undo(runtime: Runtime, ref: str, kept: Path | None, moved: bool) -> None:
    """Give the file back to quarantine after a reopen that did not happen."""
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
