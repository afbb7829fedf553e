"""Repairs a run may make of what it found; none unless asked, each recorded.

    stuck                re-enqueue the document; the worker's lease lets exactly
                         one delivery process it, however many are queued
    deleted_but_present  delete the object a soft delete left behind
    missing_object       mark the row: error code ``missing_object`` and an event;
                         the status stays ``stored`` (the document was stored; its
                         object is what went), so the API shows the problem
    orphan_object        delete the object; only when the operator names this kind
    unencrypted_object   copy the object onto itself with the expected server-side
                         encryption; size and SHA-256 are checked after the copy

No object that a live document names is ever deleted: the check runs again
right before each delete. Each repair records what it did as a document event
(``requeued``, ``object_deleted``, ``missing_object``, ``object_reencrypted``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pipeline import documents
from pipeline.db.models import Document, utcnow
from pipeline.documents import Actor
from pipeline.errors import IngestError
from pipeline.reconcile.confirm import named_by_live_documents
from pipeline.reconcile.findings import (
    DELETED_BUT_PRESENT,
    MISSING_OBJECT,
    ORPHAN_OBJECT,
    STUCK,
    UNENCRYPTED_OBJECT,
    Finding,
)
from pipeline.storage import ObjectStore

log = logging.getLogger(__name__)

MISSING_CODE = "missing_object"
DONE, DRY_RUN, SKIPPED, FAILED = "done", "dry_run", "skipped", "failed"


class Repairer:
    def __init__(self, sessions: Callable[[], Session], store: ObjectStore,
                 actor: Actor, run_id: int, kinds: tuple[str, ...], dry_run: bool,
                 enqueue: Callable[[uuid.UUID], None] | None):
        self._sessions = sessions
        self._store = store
        self._actor = actor
        self._run_id = run_id
        self._kinds = kinds
        self._dry_run = dry_run
        self._enqueue = enqueue
        self._actions = {
            STUCK: self._requeue,
            DELETED_BUT_PRESENT: self._delete_object,
            ORPHAN_OBJECT: self._delete_object,
            MISSING_OBJECT: self._mark_missing,
            UNENCRYPTED_OBJECT: self._reencrypt,
        }

    def apply(self, finding: Finding) -> str | None:
        """What became of the finding's repair: None when not asked for."""
        if finding.kind not in self._kinds or finding.kind not in self._actions:
            return None
        if self._dry_run:
            log.info("repair planned run_id=%d kind=%s document_id=%s s3_key=%s",
                     self._run_id, finding.kind, finding.document_id, finding.key)
            return DRY_RUN
        try:
            return self._actions[finding.kind](finding)
        except (IngestError, SQLAlchemyError, OSError, KeyError) as error:
            log.warning("repair failed run_id=%d kind=%s document_id=%s s3_key=%s "
                        "error=%s", self._run_id, finding.kind, finding.document_id,
                        finding.key, error)
            return FAILED

    def _requeue(self, finding: Finding) -> str:
        if self._enqueue is None or not finding.detail.get("spooled"):
            # Without its spooled file there is nothing a worker could process.
            return SKIPPED
        with self._sessions() as session:
            session.execute(
                update(Document)
                .where(Document.id == finding.document_id,
                       Document.status == "received")
                .values(updated_at=utcnow()))
            documents.record_event(session, finding.document_id, "requeued",
                                   self._actor, by="reconciliation",
                                   run_id=self._run_id)
            session.commit()
        self._enqueue(finding.document_id)
        log.info("repair requeued run_id=%d document_id=%s", self._run_id,
                 finding.document_id)
        return DONE

    def _delete_object(self, finding: Finding) -> str:
        if named_by_live_documents(self._sessions, [finding.key]):
            # Claimed since it was confirmed (a delete handed it to a duplicate).
            return SKIPPED
        self._store.delete(finding.key)
        if finding.document_id is not None:
            with self._sessions() as session:
                documents.record_event(session, finding.document_id, "object_deleted",
                                       self._actor, s3_key=finding.key,
                                       role=finding.role, by="reconciliation",
                                       run_id=self._run_id, finding=finding.kind)
                session.commit()
        log.info("repair deleted object run_id=%d kind=%s document_id=%s s3_key=%s",
                 self._run_id, finding.kind, finding.document_id, finding.key)
        return DONE

    def _mark_missing(self, finding: Finding) -> str:
        message = (f"the {finding.role} {finding.key} is not in the bucket "
                   f"(reconciliation run {self._run_id})")
        with self._sessions() as session:
            not_marked = or_(Document.error_code.is_(None),
                             Document.error_code != MISSING_CODE)
            marked = session.execute(
                update(Document)
                .where(Document.id == finding.document_id, Document.status == "stored",
                       Document.is_active.is_(True), not_marked)
                .values(error_code=MISSING_CODE, error_message=message,
                        updated_at=utcnow())
            ).rowcount
            if marked != 1:
                session.rollback()
                return SKIPPED
            documents.record_event(session, finding.document_id, MISSING_CODE,
                                   self._actor, s3_key=finding.key, role=finding.role,
                                   run_id=self._run_id)
            session.commit()
        log.info("repair marked missing run_id=%d document_id=%s s3_key=%s",
                 self._run_id, finding.document_id, finding.key)
        return DONE

    def _reencrypt(self, finding: Finding) -> str:
        if not named_by_live_documents(self._sessions, [finding.key]):
            # Deleted since (its own finding then says so): nothing to protect.
            return SKIPPED
        after = self._store.reencrypt(finding.key)
        if finding.document_id is not None:
            with self._sessions() as session:
                documents.record_event(session, finding.document_id, "object_reencrypted",
                                       self._actor, s3_key=finding.key, role=finding.role,
                                       sse=after.sse, kms_key_id=after.kms_key_id,
                                       run_id=self._run_id)
                session.commit()
        log.info("repair re-encrypted object run_id=%d document_id=%s s3_key=%s sse=%s",
                 self._run_id, finding.document_id, finding.key, after.sse)
        return DONE
