"""``sluice reconcile``: compare the database with the bucket now, print the report."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

import click

from cli.context import CommandContext
from pipeline.reconcile import REPAIRS, AlreadyRunning, RunOptions, RunResult, reconcile
from pipeline.reconcile.findings import STUCK
from pipeline.reconcile.report import FORMATS, report_chunks

EXIT_FINDINGS = 3
EXIT_ERROR = 1


@click.command("reconcile")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json",
              show_default=True, help="Format of the report printed or written.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to FILE instead of standard output.")
@click.option("--deep", is_flag=True,
              help="Inspect every object (one HEAD each): checksum and encryption.")
@click.option("--sample", type=click.IntRange(min=0), default=None,
              help="Inspect N objects picked at random "
                   "(default: SLUICE_RECONCILE_SAMPLE_SIZE).")
@click.option("--repair", "repairs", multiple=True,
              type=click.Choice(["all", *REPAIRS]),
              help="Repair findings of this kind (repeat for several); 'all' is "
                   "every kind but orphan_object, which must be named on its own.")
@click.option("--dry-run", is_flag=True, help="Show the repairs without making them.")
@click.option("--grace", "orphan_grace_seconds", type=click.IntRange(min=0),
              default=None,
              help="Seconds before an unaccounted object counts as an orphan.")
@click.option("--stuck-after", "stuck_after_seconds", type=click.IntRange(min=1),
              default=None, help="Seconds before a waiting document counts as stuck.")
@click.pass_obj
def reconcile_command(obj: CommandContext, fmt: str, output: Path | None, deep: bool,
                      sample: int | None, repairs: tuple[str, ...], dry_run: bool,
                      orphan_grace_seconds: int | None,
                      stuck_after_seconds: int | None) -> None:
    """Compare the documents table with the bucket and report every difference.

    Exit status: 0 when nothing differs, 3 when there are findings, 1 on errors
    (including when another reconciliation is running).
    """
    options = RunOptions.from_settings(
        obj.settings, trigger="cli", deep=deep, sample_size=sample,
        repairs=repairs or None, dry_run=dry_run,
        orphan_grace_seconds=orphan_grace_seconds,
        stuck_after_seconds=stuck_after_seconds,
    )
    try:
        result = reconcile(obj.runtime, options, enqueue=_enqueuer(obj, options))
    except AlreadyRunning as refused:
        click.echo(f"sluice: {refused}; this reconciliation did not start", err=True)
        sys.exit(EXIT_ERROR)

    _write_report(obj, result.run_id, fmt, output)
    _summarize(result, options)
    if result.errors:
        sys.exit(EXIT_ERROR)
    if result.findings_total:
        sys.exit(EXIT_FINDINGS)


def _enqueuer(obj: CommandContext,
              options: RunOptions) -> Callable[[uuid.UUID], None] | None:
    if STUCK not in options.repairs or options.dry_run:
        return None
    from workers.celery_app import enqueue_ingest

    def enqueue(document_id: uuid.UUID) -> None:
        enqueue_ingest(obj.celery, document_id)

    return enqueue


def _write_report(obj: CommandContext, run_id: int, fmt: str,
                  output: Path | None) -> None:
    chunks = report_chunks(obj.runtime.engine, run_id, fmt) or iter(())
    if output is None:
        _copy(chunks, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as out:
        _copy(chunks, out)


def _copy(chunks: Iterable[str], out: TextIO) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


def _summarize(result: RunResult, options: RunOptions) -> None:
    stats = result.stats
    found = ", ".join(f"{kind} {count}" for kind, count in result.counts.items()
                      if count)
    click.echo(f"reconciliation run {result.run_id}: {result.findings_total} findings"
               f"{' (' + found + ')' if found else ''}; "
               f"{stats['rows_scanned']} rows, "
               f"{sum(stats['objects_listed'].values())} objects, "
               f"{stats['objects_inspected']} inspected ({options.mode})", err=True)
    note = result.stats.get("encryption_note")
    if note:
        click.echo(f"note: {note}", err=True)
    repairs = result.stats.get("repairs") or {}
    if repairs:
        label = "repairs planned (dry run)" if options.dry_run else "repairs"
        states = ", ".join(f"{state} {count}" for state, count in repairs.items())
        click.echo(f"{label}: {states}", err=True)
    if result.errors:
        click.echo(f"sluice: {result.errors} checks or repairs failed; see the log",
                   err=True)
    click.echo(f"reports: {result.reports.get('json')} {result.reports.get('csv')}",
               err=True)


COMMANDS = [reconcile_command]
