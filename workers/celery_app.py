"""The Celery app, configured from Settings for at-least-once delivery that loses nothing.

The reliability settings, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged
  only after its task ran, so a worker killed mid-file (OOM killer, SIGKILL) gives
  the message back to the broker instead of losing it.
* ``worker_prefetch_multiplier=1``: a worker holds one message per process, so a
  slow file does not strand others behind it while other workers are idle.
* Time limits: the readers have their own deadline in the sandbox; the task's
  soft and hard limits are a backstop for the whole file (upload included).
* ``visibility_timeout`` (Redis): Redis redelivers an unacknowledged message after
  this long. It must exceed the hard limit, or a slow but healthy task would be
  handed to a second worker while it still runs.
* Retries: only TransientError (bucket, database, broker), with exponential
  backoff and jitter; a PermanentError is a verdict on the file, never retried.
* Results are not stored: the documents table is the only status users read.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from pipeline.settings import Settings
from workers.sql_broker import celery_url

INGEST_TASK = "sluice.ingest_document"
SWEEP_TASK = "sluice.sweep"
RECONCILE_TASK = "sluice.reconcile"
# A nightly run missed by more than this waits for the next night.
RECONCILE_EXPIRES_SECONDS = 6 * 3600


def make_celery(settings: Settings) -> Celery:
    app = Celery("sluice", broker=celery_url(settings.broker_url), set_as_current=True)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue_name,
        task_soft_time_limit=settings.task_soft_time_limit_seconds,
        task_time_limit=settings.task_time_limit_seconds,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        beat_schedule={
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": float(settings.sweep_interval_seconds),
                # A backlog of sweeps is worth nothing; the next one does the job.
                "options": {"expires": float(settings.sweep_interval_seconds)},
            },
            "reconcile": {
                "task": RECONCILE_TASK,
                "schedule": crontab.from_string(settings.reconcile_schedule),
                "options": {"expires": float(RECONCILE_EXPIRES_SECONDS)},
            },
        },
    )
    if settings.is_embedded_broker:
        # The SQL transport has no broadcast, so no remote control.
        app.conf.worker_enable_remote_control = False
    app.conf.sluice_settings = settings

    from workers.tasks import register_tasks

    register_tasks(app, settings)
    return app


def _transport_options(settings: Settings) -> dict:
    if settings.is_embedded_broker:
        return {}
    return {"visibility_timeout": settings.task_time_limit_seconds * 2 + 60}


def enqueue_ingest(app: Celery, document_id: object, spool_ref: str | None = None) -> None:
    """Ask a worker to process a document; the message holds its id, never its bytes."""
    app.send_task(INGEST_TASK, args=[str(document_id)], kwargs={"spool_ref": spool_ref})
