"""``sluice serve``: the HTTP API in one uvicorn process."""

from __future__ import annotations

import click
import uvicorn

from cli.context import CommandContext
from pipeline.settings import Settings

# A stopping API lets requests in flight finish for this long, then cuts them: a
# slow or stalled client must not keep it alive (an upload cut off keeps nothing).
GRACEFUL_SHUTDOWN_SECONDS = 10


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: SLUICE_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: SLUICE_API_PORT).")
@click.pass_obj
def serve(obj: CommandContext, host: str | None, port: int | None) -> None:
    """Serve the HTTP API (drop endpoint and document API)."""
    from api import create_app

    settings = _with_address(obj.settings, host, port)
    app = create_app(settings)
    click.echo(f"serving the API on http://{settings.api_host}:{settings.api_port}", err=True)
    # log_config=None: uvicorn's lines go through Sluice's logging set-up.
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None,
                proxy_headers=False, server_header=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)


def _with_address(settings: Settings, host: str | None, port: int | None) -> Settings:
    """Settings with the address given on the command line, if any.

    Rebuilt rather than copied, so that values derived from the address (the
    default ``public_url``) follow it.
    """
    overrides = {name: value for name, value in (("api_host", host), ("api_port", port))
                 if value is not None}
    return Settings(**overrides) if overrides else settings


COMMANDS = [serve]
