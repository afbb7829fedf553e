"""Confirming candidate findings before they count, a batch at a time.

The listing and the table are read over seconds or hours while uploads and
deletes go on, so a few differences are only the two reads disagreeing about
time: a document deleted after the table was read looks missing, an object
deleted just after the listing passed it looks deleted-but-present, an upload
whose row was written after the scan began looks orphaned. Each candidate is
checked again against the row as it is now and, where it matters, the object as
it is now; only what still holds is reported.

One more rule guards against losing content: an object that any live document
names is never reported as left over (orphan, deleted but present), whatever
its name says. Deleting a stored document that has duplicates hands its
objects to the oldest of them (``pipeline.removal``), so the deleted row and
its heir then name the same object; the heir's claim wins.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pipeline.db.models import Document
from pipeline.reconcile.bounded import BoundedPool
from pipeline.reconcile.findings import (
    DELETED_BUT_PRESENT,
    MISSING_OBJECT,
    ORIGINAL,
    ORPHAN_OBJECT,
    STUCK,
    Finding,
)
from pipeline.reconcile.merge import IN_FLIGHT, Clock, is_stuck, stuck_detail
from pipeline.reconcile.table import (
    ID,
    IS_ACTIVE,
    S3_KEY,
    STATUS,
    THUMBNAIL_KEY,
    documents_query,
)
from pipeline.storage import ObjectStore

log = logging.getLogger(__name__)

CONFIRM_BATCH = 200
LEFT_OVER = frozenset({ORPHAN_OBJECT, DELETED_BUT_PRESENT})


class Confirmer:
    def __init__(self, sessions: Callable[[], Session], store: ObjectStore,
                 pool: BoundedPool[Any], clock: Clock, emit: Callable[[Finding], None]):
        self._sessions = sessions
        self._store = store
        self._pool = pool
        self._clock = clock
        self._emit = emit
        self._batch: list[Finding] = []
        self.dropped = 0

    def add(self, candidate: Finding) -> None:
        self._batch.append(candidate)
        if len(self._batch) >= CONFIRM_BATCH:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        rows = self._current_rows(batch)
        present = self._presence(batch)
        claimed = named_by_live_documents(self._sessions, [
            candidate.key for candidate in batch
            if candidate.kind in LEFT_OVER and candidate.key])
        for candidate in batch:
            confirmed = None
            if candidate.key not in claimed or candidate.kind not in LEFT_OVER:
                confirmed = _still_holds(candidate, rows.get(candidate.named_id),
                                         present.get(candidate.key), self._clock)
            if confirmed is None:
                self.dropped += 1
                log.debug("candidate dropped kind=%s s3_key=%s", candidate.kind,
                          candidate.key)
                continue
            self._emit(confirmed)

    def _current_rows(self, batch: list[Finding]) -> dict[uuid.UUID, Any]:
        ids = list({candidate.named_id for candidate in batch} - {None})
        if not ids:
            return {}
        with self._sessions() as session:
            query = documents_query(session.get_bind().dialect.name)
            found = session.execute(query.where(Document.id.in_(ids)))
            return {uuid.UUID(row[ID]): row for row in found}

    def _presence(self, batch: list[Finding]) -> dict[str | None, bool]:
        keys = [candidate.key for candidate in batch
                if candidate.kind in (MISSING_OBJECT, DELETED_BUT_PRESENT)]
        heads = self._pool.map(self._store.head, keys)
        return {key: head is not None for key, head in zip(keys, heads, strict=True)}


def named_by_live_documents(sessions: Callable[[], Session],
                            keys: list[str]) -> set[str]:
    """Those of ``keys`` that a live document names as its original or thumbnail."""
    if not keys:
        return set()
    with sessions() as session:
        found = session.execute(
            select(Document.s3_key, Document.thumbnail_key)
            .where(Document.is_active.is_(True),
                   or_(Document.s3_key.in_(keys), Document.thumbnail_key.in_(keys))))
        named = {key for row in found for key in row if key}
    return named.intersection(keys)


def _still_holds(candidate: Finding, row: Any | None, present: bool | None,
                 clock: Clock) -> Finding | None:
    """The candidate as it stands now, or None if it no longer holds."""
    kind = candidate.kind
    if kind == MISSING_OBJECT:
        expected = None
        if row is not None and row[IS_ACTIVE] and row[STATUS] == "stored":
            expected = row[S3_KEY] if candidate.role == ORIGINAL else row[THUMBNAIL_KEY]
        return candidate if expected == candidate.key and present is False else None
    if kind == DELETED_BUT_PRESENT:
        return candidate if row is not None and not row[IS_ACTIVE] and present else None
    if kind == ORPHAN_OBJECT:
        return candidate if not _accounts_for(row, candidate.key) else None
    if kind == STUCK:
        return _still_stuck(candidate, row, clock)
    return candidate


def _accounts_for(row: Any | None, key: str | None) -> bool:
    if row is None:
        return False
    return row[STATUS] in IN_FLIGHT or key in (row[S3_KEY], row[THUMBNAIL_KEY])


def _still_stuck(candidate: Finding, row: Any | None, clock: Clock) -> Finding | None:
    if row is None or not is_stuck(row, clock):
        return None
    return Finding(candidate.kind, candidate.document_id, None, None, stuck_detail(row))
