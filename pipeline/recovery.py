"""What a starting watcher picks up from before it stopped."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from pipeline.db.models import Document
from pipeline.documents import Actor
from pipeline.runtime import Runtime
from pipeline.sweep import SweepResult, settle_unclaimed_rows

# A row without its file this old is no longer a claim in progress elsewhere.
UNCLAIMED_GRACE_SECONDS = 60


def recover(runtime: Runtime, actor: Actor) -> list[uuid.UUID]:
    """Settle half-done claims and list every received document to enqueue again.

    Enqueueing a document twice is harmless (the lease lets one worker through);
    leaving one un-enqueued after a crash would strand it until the next sweep.
    """
    result = SweepResult()
    settle_unclaimed_rows(runtime, actor, UNCLAIMED_GRACE_SECONDS, result)
    with runtime.session() as session:
        waiting = session.scalars(
            select(Document.id).where(Document.status == "received",
                                      Document.spool_ref.is_not(None))
        ).all()
    return list(dict.fromkeys([*result.requeue, *waiting]))
