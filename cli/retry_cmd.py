"""``sluice retry``: send quarantined documents through the pipeline again."""

from __future__ import annotations

import uuid

import click

from cli.context import CommandContext
from cli.documents_cmd import EXIT_REJECTED, _load, _report, _wait_for
from cli.jsonlines import json_line
from pipeline.db.models import FINAL_STATUSES
from pipeline.documents import Actor
from pipeline.retry import QUEUED, failed_with_code, retry


@click.command("retry")
@click.argument("document_ids", nargs=-1, type=click.UUID)
@click.option("--code", help="Every failed document with this error code "
                             "(timeout, too_large, unsupported_type, ...).")
@click.option("--wait", is_flag=True, help="Block until each retried document is final.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per document.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after N seconds.")
@click.pass_obj
def retry_cmd(obj: CommandContext, document_ids: tuple[uuid.UUID, ...], code: str | None,
              wait: bool, as_json: bool, timeout: float | None) -> None:
    """Take failed documents out of quarantine and process them again, same ids.

    For files refused for a reason that has since gone away: a limit raised, a
    type allowed, a reader that timed out on a busy machine.
    """
    from workers.celery_app import enqueue_ingest

    if not document_ids and not code:
        raise click.UsageError("name document ids, or --code for every failed document "
                               "with that error code")
    ids = list(document_ids) + (failed_with_code(obj.runtime, code) if code else [])

    def enqueue(document_id: uuid.UUID, spool_ref: str) -> None:
        enqueue_ingest(obj.celery, document_id, spool_ref)

    outcomes = list(retry(obj.runtime, dict.fromkeys(ids), Actor.here(), enqueue))
    for outcome in outcomes:
        if not as_json:
            click.echo(f"{outcome.document_id}  {outcome.outcome:<10} {outcome.detail}")
        elif outcome.outcome != QUEUED or not wait:
            # With --wait, a queued document is printed once it is final, below.
            click.echo(json_line({"id": str(outcome.document_id),
                                  "retry": outcome.outcome, "detail": outcome.detail}))
    if not outcomes:
        click.echo(f"sluice: no failed documents with code {code}", err=True)

    queued = [outcome.document_id for outcome in outcomes if outcome.outcome == QUEUED]
    final = _wait_for(obj, queued, timeout) if wait else _load(obj, queued)
    if wait:
        _report(final, as_json)
    pending = wait and any(document.status not in FINAL_STATUSES for document in final)
    if pending:
        click.echo("sluice: gave up waiting; some documents are still in progress", err=True)
    if len(queued) < len(outcomes) or any(d.status == "failed" for d in final):
        raise SystemExit(EXIT_REJECTED)
    if pending:
        raise SystemExit(1)


COMMANDS = [retry_cmd]
