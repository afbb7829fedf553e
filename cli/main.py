"""``sluice``: run the parts of Sluice and read what it holds.

Exit status: 0 when everything asked for ended well; 1 on an error of Sluice
itself or its services; 3 when Sluice worked but some inputs were rejected.
"""

from __future__ import annotations

import logging
import sys

import click

from cli.context import CommandContext
from pipeline.logs import setup_logging

log = logging.getLogger(__name__)

EXIT_REJECTED = 3


class SluiceGroup(click.Group):
    """Turns any unexpected failure into one readable line and exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as error:  # noqa: BLE001 - the one place that reports any error
            log.debug("command failed", exc_info=True)
            click.echo(f"sluice: error: {type(error).__name__}: {error}", err=True)
            sys.exit(1)


@click.group(cls=SluiceGroup)
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """Sluice: documents from a folder, HTTP or archives into an encrypted bucket."""
    setup_logging(log_level)
    ctx.obj = CommandContext()


def _register() -> None:
    from cli import (
        documents_cmd,
        migrate_cmd,
        reconcile_cmd,
        retry_cmd,
        run_cmd,
        serve_cmd,
        up_cmd,
    )

    for module in (run_cmd, documents_cmd, serve_cmd, up_cmd, migrate_cmd,
                   reconcile_cmd, retry_cmd):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":
    main()
