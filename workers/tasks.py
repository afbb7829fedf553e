"""Thin Celery tasks: turn a message into one call of a ``pipeline`` function."""

from __future__ import annotations

import logging
import uuid

from celery import Celery, Task
from celery.signals import worker_process_shutdown

from pipeline.documents import Actor
from pipeline.errors import TransientError
from pipeline.ingest import ingest_document
from pipeline.logs import bind_context
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.sweep import sweep

log = logging.getLogger(__name__)


def register_tasks(app: Celery, settings: Settings) -> None:
    from workers.celery_app import INGEST_TASK, SWEEP_TASK, enqueue_ingest

    @app.task(
        name=INGEST_TASK, bind=True,
        autoretry_for=(TransientError,), max_retries=settings.task_max_retries,
        retry_backoff=2, retry_backoff_max=300, retry_jitter=True,
    )
    def ingest(task: Task, document_id: str, spool_ref: str | None = None) -> str:
        runtime = Runtime.for_process(settings)
        actor = Actor.here(task.request.id)
        with bind_context(document_id=document_id, task_id=task.request.id):
            return ingest_document(runtime, uuid.UUID(document_id), actor)

    @app.task(name=SWEEP_TASK, bind=True)
    def sweep_documents(task: Task) -> int:
        runtime = Runtime.for_process(settings)
        result = sweep(runtime, Actor.here(task.request.id))
        for document_id in result.requeue:
            enqueue_ingest(app, document_id)
        return len(result.requeue)


@worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    from pipeline import runtime

    for each in list(runtime._by_process.values()):
        each.close()
