"""Thin Celery tasks: turn a message into one call of a ``pipeline`` function."""

from __future__ import annotations

import logging
import uuid

from celery import Celery, Task
from celery.signals import worker_process_shutdown, worker_ready

from pipeline.documents import Actor
from pipeline.errors import TransientError
from pipeline.ingest import ingest_document
from pipeline.logs import bind_context
from pipeline.reconcile import AlreadyRunning, RunOptions, reconcile
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.sweep import sweep

log = logging.getLogger(__name__)


def register_tasks(app: Celery, settings: Settings) -> None:
    from workers.celery_app import (
        INGEST_TASK,
        RECONCILE_TASK,
        SWEEP_TASK,
        enqueue_ingest,
    )

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

    # Acknowledged on receipt, unlike ingest: a run may outlast the broker's
    # visibility timeout, and a redelivered copy would only meet the lock. A run
    # lost with its worker is made up by the next scheduled one.
    @app.task(name=RECONCILE_TASK, bind=True, acks_late=False,
              time_limit=settings.reconcile_time_limit_seconds,
              soft_time_limit=max(settings.reconcile_time_limit_seconds - 60, 1))
    def reconcile_bucket(task: Task) -> int | None:
        runtime = Runtime.for_process(settings)
        options = RunOptions.from_settings(settings, trigger="beat")

        def enqueue(document_id: uuid.UUID) -> None:
            enqueue_ingest(app, document_id)

        with bind_context(task_id=task.request.id):
            try:
                result = reconcile(runtime, options, enqueue=enqueue)
            except AlreadyRunning as refused:
                log.info("reconciliation skipped reason=%s", refused)
                return None
        return result.run_id


@worker_ready.connect
def _log_pool(sender: object, **_: object) -> None:
    # AsynPool (one pipe per pool process) only runs on a transport that works with
    # Celery's event loop; the plain pool's shared queue lock can stall the worker.
    pool = getattr(getattr(sender, "pool", None), "_pool", None)
    log.info("worker pool ready pool=%s processes=%s", type(pool).__name__,
             getattr(pool, "_processes", "?"))


@worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    from pipeline import runtime

    for each in list(runtime._by_process.values()):
        each.close()
