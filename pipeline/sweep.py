"""Finding documents that fell through the cracks, so that nothing is lost.

Brokers lose messages (Redis without persistence, a SQLite broker whose worker
was killed holding a message), and processes die between two steps. The row is
the ledger: whatever it says is unfinished for too long is handed out again.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from pipeline import documents, liveness
from pipeline.db.models import Document, utcnow
from pipeline.documents import Actor
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# A partial upload older than this belongs to a request that died long ago.
STALE_PARTIAL_SECONDS = 24 * 3600
BATCH = 500


@dataclass
class SweepResult:
    requeue: list[uuid.UUID] = field(default_factory=list)
    adopted: int = 0
    forgotten: int = 0
    partials_removed: int = 0
    spool_cleaned: int = 0


def sweep(runtime: Runtime, actor: Actor, stuck_after_seconds: int | None = None) -> SweepResult:
    """Collect the documents to enqueue again; the caller enqueues them."""
    stuck_after = stuck_after_seconds or runtime.settings.stuck_after_seconds
    result = SweepResult()
    settle_unclaimed_rows(runtime, actor, stuck_after, result)
    _break_dead_leases(runtime, actor)
    _collect_stuck(runtime, actor, stuck_after, result)
    _tidy_spool(runtime, actor, stuck_after, result)
    _remove_stale_partials(runtime, result)
    if result.requeue or result.adopted or result.forgotten or result.spool_cleaned:
        log.info("sweep requeued=%d adopted=%d forgotten=%d spool_cleaned=%d",
                 len(result.requeue), result.adopted, result.forgotten, result.spool_cleaned)
    return result


def settle_unclaimed_rows(runtime: Runtime, actor: Actor, stuck_after: int,
                           result: SweepResult) -> None:
    """Rows a watcher wrote just before a crash: adopt the file or drop the row."""
    with runtime.session() as session:
        ids = session.scalars(
            select(Document.id).where(Document.spool_ref.is_(None),
                                      Document.status == "received",
                                      Document.uploaded_at < documents.stale_since(stuck_after))
            .limit(BATCH)
        ).all()
        for document_id in ids:
            if runtime.spool.exists(str(document_id)):
                documents.attach_spool(session, document_id, str(document_id), actor)
                result.adopted += 1
                result.requeue.append(document_id)
            else:
                # The file is still in the inbox (the rename never ran) or another
                # watcher claimed it; either way the next scan takes it from there.
                documents.forget_unclaimed(session, document_id)
                result.forgotten += 1
        session.commit()


def _break_dead_leases(runtime: Runtime, actor: Actor) -> None:
    """End at once the leases of this host's processes that died (OOM killer, SIGKILL).

    Without this a killed worker's documents wait out their lease (the task's hard
    limit and more) before anyone takes them over. Only this host's pids can be
    checked; leases of other hosts still run out on their own.
    """
    here = socket.gethostname()
    now = utcnow()
    with runtime.session() as session:
        held = session.execute(
            select(Document.id, Document.lease_owner)
            .where(Document.status == "processing", Document.lease_until >= now,
                   Document.lease_owner.like(f"%@{here}:%"))
            .limit(BATCH)
        ).all()
        for document_id, owner in held:
            pid = liveness.lease_holder_pid(owner, here)
            if pid is None or liveness.is_running(pid):
                continue
            broken = session.execute(
                update(Document).where(Document.id == document_id,
                                       Document.status == "processing",
                                       Document.lease_owner == owner)
                .values(lease_until=now - timedelta(seconds=1))
            ).rowcount
            if broken:
                documents.record_event(session, document_id, "lease_broken", actor,
                                       holder=owner)
                log.warning("lease broken document_id=%s holder=%s (process gone)",
                            document_id, owner)
        session.commit()


def _collect_stuck(runtime: Runtime, actor: Actor, stuck_after: int,
                   result: SweepResult) -> None:
    now = utcnow()
    with runtime.session() as session:
        waiting = select(Document.id).where(
            Document.spool_ref.is_not(None),
            ((Document.status == "received")
             & (Document.updated_at < documents.stale_since(stuck_after)))
            | ((Document.status == "processing") & (Document.lease_until < now)),
        ).limit(BATCH)
        ids = list(session.scalars(waiting).all())
        if not ids:
            return
        # Touching updated_at keeps the next sweep from requeueing them again
        # before the workers had their chance.
        session.execute(update(Document).where(Document.id.in_(ids),
                                               Document.status == "received")
                        .values(updated_at=now))
        for document_id in ids:
            documents.record_event(session, document_id, "requeued", actor)
        session.commit()
    result.requeue.extend(ids)


def _tidy_spool(runtime: Runtime, actor: Actor, stuck_after: int,
                result: SweepResult) -> None:
    """Spooled copies nobody will come back for.

    A worker killed after its commit leaves the copy of a finished document behind:
    it goes. A copy with no row at all (an upload that died before its row was
    written, so nobody was told it arrived) is moved to quarantine, never deleted.
    """
    refs = {}
    limit = time.time() - stuck_after
    for ref, mtime in runtime.spool.iter_refs():
        try:
            refs[uuid.UUID(ref)] = (ref, mtime)
        except ValueError:
            continue
    for chunk in _chunks(list(refs), BATCH):
        with runtime.session() as session:
            statuses = dict(session.execute(
                select(Document.id, Document.status).where(Document.id.in_(chunk))).all())
        for document_id in chunk:
            ref, mtime = refs[document_id]
            status = statuses.get(document_id)
            if status in ("stored", "duplicate"):
                runtime.spool.remove(ref)
                result.spool_cleaned += 1
            elif status is None and mtime < limit:
                _quarantine_orphan(runtime, ref)
                result.spool_cleaned += 1


def _quarantine_orphan(runtime: Runtime, ref: str) -> None:
    target = runtime.settings.quarantine / f"{ref}-orphaned-in-spool"
    if runtime.spool.move_out(ref, target):
        sidecar = target.with_name(target.name + ".error.json")
        sidecar.write_text(json.dumps({
            "spool_ref": ref,
            "error": {"code": "unreadable",
                      "message": "found in the spool without a document row"},
        }, indent=2))
        log.warning("quarantined orphan spool file spool_ref=%s path=%s", ref, target)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _remove_stale_partials(runtime: Runtime, result: SweepResult) -> None:
    for partial in runtime.spool.stale_incoming(STALE_PARTIAL_SECONDS):
        partial.unlink(missing_ok=True)
        result.partials_removed += 1
