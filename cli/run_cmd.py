"""Commands that run Sluice's parts: db upgrade, worker, beat, watch."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from cli.context import CommandContext
from pipeline.db.schema import upgrade
from pipeline.documents import Actor
from pipeline.recovery import recover

log = logging.getLogger(__name__)


@click.group("db")
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: CommandContext) -> None:
    """Apply the schema migrations."""
    upgrade(obj.settings.database_url)
    click.echo("database is up to date")


@click.command("worker")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Worker processes (default: SLUICE_WORKER_CONCURRENCY).")
@click.option("--hostname", "-n", default=None, help="Celery node name.")
@click.pass_obj
def worker(obj: CommandContext, concurrency: int | None, hostname: str | None) -> None:
    """Process documents from the queue."""
    for folder in (obj.settings.spool, obj.settings.quarantine):
        folder.mkdir(parents=True, exist_ok=True)
    argv = ["worker", "--loglevel", logging.getLevelName(logging.getLogger().level),
            "--concurrency", str(concurrency or obj.settings.worker_concurrency),
            "--without-gossip", "--without-mingle", "--queues", obj.settings.queue_name]
    if hostname:
        argv += ["--hostname", hostname]
    obj.celery.worker_main(argv)


@click.command("beat")
@click.pass_obj
def beat(obj: CommandContext) -> None:
    """Run the scheduler (stuck-document sweeps, nightly reconciliation)."""
    obj.settings.var_dir.mkdir(parents=True, exist_ok=True)
    schedule = obj.settings.var_dir / "celerybeat-schedule"
    obj.celery.Beat(schedule=str(schedule), loglevel="INFO").run()


@click.command("watch")
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def watch(obj: CommandContext, folders: tuple[Path, ...]) -> None:
    """Watch FOLDERS (default: SLUICE_INBOX) and ingest what is dropped there."""
    from watchers.folder import InboxWatcher
    from workers.celery_app import enqueue_ingest

    runtime, app = obj.runtime, obj.celery
    inboxes = list(folders) or [obj.settings.inbox]
    watcher = InboxWatcher(runtime, inboxes, lambda document_id: enqueue_ingest(app, document_id))

    for document_id in recover(runtime, Actor.here()):
        enqueue_ingest(app, document_id)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"watching {', '.join(str(p.resolve()) for p in inboxes)}", err=True)
    watcher.run(stop)


COMMANDS = [db, worker, beat, watch]
