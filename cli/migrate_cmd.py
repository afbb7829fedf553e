"""``sluice migrate SOURCE``: a folder tree or a zip/tar archive, in a resumable run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from cli.context import CommandContext
from cli.jsonlines import json_line

EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130


@click.command("migrate")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True,
              help="Show what would come in (types, duplicates, refusals); "
                   "change nothing.")
@click.option("--category", help="Category of every document (a map may override it).")
@click.option("--tag", "tags", multiple=True, help="A tag for every document (repeat).")
@click.option("--map", "maps", multiple=True, metavar="FOLDER=category:X|tag:Y",
              help="Label documents under a folder name (repeat).")
@click.option("--map-file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file of --map rules, one per line.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Take only files matching (a name, or a path with '/'; repeat).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip files, folders and archives matching (repeat).")
@click.option("--uploaded-by", help="Who hands the documents over.")
@click.option("--max-in-flight", type=click.IntRange(min=1), default=None,
              help="Documents not yet final before spooling pauses "
                   "(default: SLUICE_MIGRATE_MAX_IN_FLIGHT).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until every document is final, so the report has outcomes.")
@click.option("--timeout", type=float, default=None,
              help="Give up waiting after N seconds, for room under --max-in-flight "
                   "as for the workers (exit 1 if entries are still pending; run the "
                   "same command again to continue).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object.")
@click.pass_obj
def migrate(obj: CommandContext, source: Path, dry_run: bool, category: str | None,
            tags: tuple[str, ...], maps: tuple[str, ...], map_file: Path | None,
            include: tuple[str, ...], exclude: tuple[str, ...], uploaded_by: str | None,
            max_in_flight: int | None, wait: bool, timeout: float | None,
            as_json: bool) -> None:
    """Bring a folder tree or a .zip/.tar(.gz|.bz2|.xz) archive in, once.

    Running the same command again continues where it stopped and takes nothing
    twice. Exit status 3 when any entry was refused or failed; 1 when --timeout
    ended the wait with entries still pending (run it again to pick them up).
    """
    from pipeline.migration.walk import source_kind

    options = _options(obj, category, tags, maps, map_file, include, exclude,
                       uploaded_by)
    if not (source.is_dir() or source.is_file()):
        # A FIFO, socket or device: opening one to look inside may never return.
        raise click.BadParameter(
            f"{source} is not a regular file or a folder (a FIFO, socket or device); "
            "SOURCE must be a folder or a zip or tar archive", param_hint="SOURCE")
    if source_kind(source) is None:
        # The user named the wrong thing: a usage error (exit 2), not Sluice's fault.
        raise click.BadParameter(
            f"{source} is neither a folder nor a zip or tar archive "
            "(to bring in single files, use `sluice ingest`)", param_hint="SOURCE")
    if dry_run:
        _dry_run(obj, source, options, as_json)
        return
    _run(obj, source, options, max_in_flight, wait, timeout, as_json)


def _options(obj: CommandContext, category: str | None, tags: tuple[str, ...],
             maps: tuple[str, ...], map_file: Path | None, include: tuple[str, ...],
             exclude: tuple[str, ...], uploaded_by: str | None):  # noqa: ANN202
    from pipeline.migration.options import (
        BadRule,
        FolderRule,
        MigrationOptions,
        read_rules,
    )

    try:
        rules = [FolderRule.parse(text) for text in maps]
        rules += read_rules(map_file) if map_file else []
    except BadRule as error:
        raise click.BadParameter(str(error), param_hint="--map") from error
    options = MigrationOptions(category=category, tags=tags, rules=tuple(rules),
                               include=include, exclude=exclude,
                               uploaded_by=uploaded_by)
    unknown = options.categories() - set(obj.settings.categories)
    if unknown:
        raise click.BadParameter(
            f"{', '.join(sorted(unknown))}: categories must be one of "
            f"{', '.join(obj.settings.categories)}", param_hint="--category/--map")
    return options


def _dry_run(obj: CommandContext, source: Path, options: object, as_json: bool) -> None:
    from pipeline.migration.dry_run import dry_run, plan_lines

    plan = dry_run(obj.runtime, source, options)
    if as_json:
        click.echo(json_line(plan))
    else:
        for line in plan_lines(plan):
            click.echo(line)
    if plan["exit_code"]:
        raise SystemExit(EXIT_REJECTED)


def _run(obj: CommandContext, source: Path, options: object, max_in_flight: int | None,
         wait: bool, timeout: float | None, as_json: bool) -> None:
    from pipeline.migration.ledger import RunBusy
    from pipeline.migration.migrate import MigrationRequest, run_migration
    from pipeline.spool import SpoolFull

    request = MigrationRequest(
        source=source, options=options, wait=wait, timeout=timeout,
        max_in_flight=max_in_flight or obj.settings.migrate_max_in_flight)
    # Each document's "received" line says nothing the report does not.
    logging.getLogger("pipeline.intake").setLevel(logging.WARNING)
    try:
        summary = run_migration(obj.runtime, obj.celery, request, sys.stderr,
                                on_terminal=sys.stderr.isatty())
    except RunBusy as error:
        raise click.ClickException(str(error)) from error
    except SpoolFull as error:
        raise click.ClickException(f"{error}; free some space, then run the same "
                                   "command again to continue") from error
    except KeyboardInterrupt:
        click.echo("sluice: migration interrupted; run the same command again to "
                   "continue where it stopped", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None

    if as_json:
        click.echo(json_line(summary.as_dict()))
    else:
        for line in summary.lines():
            click.echo(line)
    if summary.note:
        click.echo(f"sluice: gave up waiting: {summary.note}", err=True)
    if summary.exit_code:
        raise SystemExit(summary.exit_code)


COMMANDS = [migrate]
