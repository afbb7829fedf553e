"""``sluice up``: everything on one machine, as child processes of one command.

It migrates the database, then runs the worker, the beat scheduler, the watcher
and the API, each as its own ``sluice`` process (each builds its own clients, as
it would on its own host). Ctrl-C or SIGTERM stops them all: intake first (API
and watcher), then the scheduler, then the worker, which finishes the document
in hand.

A child that dies on its own (the OOM killer takes a worker, say) is started
again after a short pause; nothing is lost meanwhile, since files wait in the
inbox and spool and messages in the broker. A child that keeps dying right after
it starts (a port already taken, a bad setting) cannot be helped by restarts:
then the rest are stopped and ``up`` exits 1. If ``up`` itself is killed, even
with SIGKILL, the kernel stops its children (Linux's parent-death signal), so
no orphaned worker or scheduler is left behind to hold the port or run twice.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import click

from cli.context import CommandContext
from cli.parent_death import stop_with_parent
from pipeline.db.schema import upgrade
from pipeline.secretfile import read_or_create_secret
from pipeline.settings import Settings

log = logging.getLogger(__name__)

API_TOKEN_FILE = "api_token"
# A Celery worker finishes the document in hand on SIGTERM; most take well under this.
STOP_GRACE_SECONDS = 30.0
WATCH_INTERVAL_SECONDS = 0.5
# A child that exits this soon after starting is failing to start, not crashing.
EARLY_EXIT_SECONDS = 10.0
EARLY_EXITS_BEFORE_GIVING_UP = 3
RESTART_PAUSE_SECONDS = 1.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    hint: str = ""
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    early_exits: int = 0

    def start(self) -> None:
        # A session of its own: the terminal's Ctrl-C reaches only ``up``, which
        # then stops the children in the right order.
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True,
                                        preexec_fn=stop_with_parent(os.getpid()))
        self.started_at = time.monotonic()

    def note_exit(self) -> bool:
        """Count an unexpected exit; True while restarting it still makes sense."""
        if time.monotonic() - self.started_at < EARLY_EXIT_SECONDS:
            self.early_exits += 1
        else:
            self.early_exits = 0
        return self.early_exits < EARLY_EXITS_BEFORE_GIVING_UP

    @property
    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait_or_kill(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("child did not stop in time name=%s pid=%d; killing it",
                        self.name, self.process.pid)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@click.command("up")
@click.pass_obj
def up(obj: CommandContext) -> None:
    """Run everything on this machine: worker, scheduler, watcher and API."""
    settings = obj.settings
    upgrade(settings.database_url)
    settings.inbox.mkdir(parents=True, exist_ok=True)
    token = _api_token(settings)

    children = _children(settings, token)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    for child in children:
        child.start()
    _announce(settings, token)

    failed = _supervise(children, stop)
    _stop_all(children)
    if failed is not None:
        click.echo(f"sluice: the {failed.name} keeps stopping right after it starts (exit "
                   f"status {failed.exit_code}); stopped everything else", err=True)
        if failed.hint:
            click.echo(f"sluice: {failed.hint}", err=True)
        sys.exit(1)
    click.echo("sluice: stopped", err=True)


def _api_token(settings: Settings) -> str | None:
    """None when SLUICE_API_TOKENS is set; else the token kept in var_dir/api_token."""
    if settings.api_tokens:
        return None
    return read_or_create_secret(settings.var_dir / API_TOKEN_FILE)


def _children(settings: Settings, token: str | None) -> list[Child]:
    base = [sys.executable, "-m", "cli.main"]
    env = dict(os.environ)
    api_env = {**env, "SLUICE_API_TOKENS": token} if token else env
    # Listed in starting order; they stop in the reverse order (API first).
    return [
        Child("worker", [*base, "worker"], env),
        Child("scheduler", [*base, "beat"], env),
        Child("watcher", [*base, "watch"], env),
        Child("API", [*base, "serve"], api_env,
              hint=f"is {settings.api_host}:{settings.api_port} taken by another program? "
                   "SLUICE_API_PORT chooses another port"),
    ]


def _announce(settings: Settings, token: str | None) -> None:
    shown = token or "one of SLUICE_API_TOKENS"
    click.echo(
        "\nSluice is running. Ctrl-C stops it.\n"
        f"  inbox:  {settings.inbox.resolve()}  (drop files here)\n"
        f"  API:    http://{settings.api_host}:{settings.api_port}/docs\n"
        f"  token:  {shown}\n"
        f"  try:    curl -H 'Authorization: Bearer {shown}' "
        f"http://{settings.api_host}:{settings.api_port}/api/documents/\n",
        err=True,
    )


def _supervise(children: list[Child], stop: threading.Event) -> Child | None:
    """Restart children that die until a stop request (None) or one that cannot start."""
    while not stop.wait(WATCH_INTERVAL_SECONDS):
        for child in children:
            if child.exit_code is None:
                continue
            if not child.note_exit():
                return child
            _restart(child, stop)
    return None


def _restart(child: Child, stop: threading.Event) -> None:
    # Doubling pauses while it keeps failing early, so a flapping child
    # does not spin; the first restart after a crash is almost immediate.
    pause = RESTART_PAUSE_SECONDS * 2 ** child.early_exits
    click.echo(f"sluice: the {child.name} stopped unexpectedly (exit status "
               f"{child.exit_code}); starting it again in {pause:.0f} s", err=True)
    log.warning("child restarting name=%s exit_status=%s", child.name, child.exit_code)
    if not stop.wait(pause):
        child.start()


def _stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        child.terminate()
        # Intake stops before the worker, so nothing new arrives while it drains.
        child.wait_or_kill(time.monotonic() + STOP_GRACE_SECONDS)


COMMANDS = [up]
