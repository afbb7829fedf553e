"""Commands that hand documents over and read them: ingest, show, list."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
from sqlalchemy import select

from cli.context import CommandContext
from cli.jsonlines import json_line
from pipeline import documents
from pipeline.db.models import FINAL_STATUSES, STATUSES, Document
from pipeline.documents import Actor
from pipeline.intake import Intake, receive_file
from pipeline.serialize import document_dict
from watchers.filters import is_ignored_name

EXIT_REJECTED = 3
POLL_SECONDS = 0.2
# Silence this long while waiting usually means no worker is running.
NO_PROGRESS_HINT_SECONDS = 15.0


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--category", help="Category of every document.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for several).")
@click.option("--uploaded-by", help="Who hands the documents over.")
@click.option("--wait", is_flag=True, help="Block until each document has a final status.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after N seconds.")
@click.pass_obj
def ingest(obj: CommandContext, paths: tuple[Path, ...], category: str | None,
           tags: tuple[str, ...], uploaded_by: str | None, wait: bool, as_json: bool,
           timeout: float | None) -> None:
    """Enqueue files or folders now. The originals stay where they are."""
    from workers.celery_app import enqueue_ingest

    if category and category not in obj.settings.categories:
        raise click.BadParameter(f"must be one of {', '.join(obj.settings.categories)}",
                                 param_hint="--category")
    runtime, actor = obj.runtime, Actor.here()
    runtime.settings.spool.mkdir(parents=True, exist_ok=True)

    ids = []
    for path in _files_under(paths):
        intake = Intake(source="cli", original_name=path.name, source_path=str(path.resolve()),
                        category=category, tags=list(tags), uploaded_by=uploaded_by)
        document = _take(obj, path, intake, actor)
        if document.status == "received":
            enqueue_ingest(obj.celery, document.id, document.spool_ref)
        ids.append(document.id)

    final = _wait_for(obj, ids, timeout) if wait else _load(obj, ids)
    _report(final, as_json)
    if any(document.status == "failed" for document in final):
        raise SystemExit(EXIT_REJECTED)
    if wait and any(document.status not in FINAL_STATUSES for document in final):
        click.echo("sluice: gave up waiting; some documents are still in progress", err=True)
        raise SystemExit(1)


def _files_under(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
            continue
        for root, folders, files in os.walk(path):
            folders[:] = sorted(name for name in folders if not is_ignored_name(name))
            for name in sorted(files):
                candidate = Path(root) / name
                if not is_ignored_name(name) and candidate.is_file() \
                        and not candidate.is_symlink():
                    yield candidate


def _take(obj: CommandContext, path: Path, intake: Intake, actor: Actor) -> Document:
    """Spool the file, or record it as too large (it then stays where it is)."""
    size = path.stat().st_size
    runtime = obj.runtime
    if size <= runtime.settings.max_file_size:
        return receive_file(runtime, path, intake, actor)
    with runtime.session() as session:
        document = documents.add_received(session, actor, spool_ref=None,
                                          id=uuid.uuid4(), file_size=size, **intake.columns())
        document.status = "failed"
        document.error_code = "too_large"
        document.error_message = (f"{size} bytes is over the limit of "
                                  f"{runtime.settings.max_file_size}; the file was left in place")
        session.flush()
        documents.record_event(session, document.id, "failed", actor, code="too_large")
        session.commit()
        return document


def _load(obj: CommandContext, ids: list[uuid.UUID]) -> list[Document]:
    with obj.runtime.session() as session:
        found = {d.id: d for d in session.scalars(select(Document).where(Document.id.in_(ids)))}
    return [found[document_id] for document_id in ids if document_id in found]


def _wait_for(obj: CommandContext, ids: list[uuid.UUID], timeout: float | None) -> list[Document]:
    started = last_change = time.monotonic()
    hinted, last_done = False, -1
    while True:
        current = _load(obj, ids)
        done = sum(document.status in FINAL_STATUSES for document in current)
        if done == len(ids):
            return current
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
        elif not hinted and now - last_change > NO_PROGRESS_HINT_SECONDS:
            click.echo("sluice: no progress for a while; is a worker running "
                       "(`sluice worker` or `sluice up`)?", err=True)
            hinted = True
        if timeout is not None and now - started > timeout:
            return current
        time.sleep(POLL_SECONDS)


def _report(found: list[Document], as_json: bool) -> None:
    for document in found:
        if as_json:
            click.echo(json_line(document_dict(document)))
        else:
            click.echo(_line(document))


def _line(document: Document) -> str:
    extra = f" {document.error_code}" if document.error_code else ""
    if document.duplicate_of:
        extra = f" of {document.duplicate_of}"
    return f"{document.id}  {document.status:<10} {document.original_name}{extra}"


@click.command("show")
@click.argument("document_id", type=click.UUID)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(obj: CommandContext, document_id: uuid.UUID, as_json: bool) -> None:
    """Show one document."""
    with obj.runtime.session() as session:
        document = documents.get(session, document_id)
    if document is None:
        raise click.ClickException(f"no document {document_id}")
    fields = document_dict(document)
    if as_json:
        click.echo(json_line(fields))
        return
    for name, value in fields.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{name:>16}: {value}")


@click.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_documents(obj: CommandContext, status: str | None, limit: int, as_json: bool) -> None:
    """List documents, newest first."""
    query = select(Document).where(Document.is_active.is_(True))
    if status:
        query = query.where(Document.status == status)
    query = query.order_by(Document.uploaded_at.desc(), Document.id).limit(limit)
    with obj.runtime.session() as session:
        found = list(session.scalars(query))
    if as_json:
        _report(found, as_json=True)
        return
    for document in found:
        pages = f"{document.page_count}p" if document.page_count is not None else "-"
        text = f"{document.text_length}ch" if document.text_length is not None else "-"
        thumb = "thumb" if document.thumbnail_key else "-"
        click.echo(f"{_line(document)}  {document.mime_type or '-'} {pages} {text} {thumb}")


COMMANDS = [ingest, show, list_documents]
