"""One reconciliation at a time, across every beat instance, worker and host.

On PostgreSQL a session-level advisory lock, held on a connection of its own
for the whole run: the database releases it when that connection ends, so a
crashed run never leaves it behind. On SQLite, which lives on one host, an
exclusive ``flock`` on a file beside the database, released by the kernel when
the process ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

# A fixed 64-bit key derived from a name, so that it reads as what it is.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"sluice.reconcile").digest()[:8], "big",
                              signed=True)


class AlreadyRunning(Exception):
    """Another reconciliation holds the lock."""


@contextmanager
def exclusive_run(engine: Engine) -> Iterator[None]:
    """Hold the reconciliation lock for the block; raise AlreadyRunning if taken."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
        return
    with _file_lock(_lock_path(engine)):
        yield


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    with engine.connect() as connection:
        taken = connection.scalar(text("SELECT pg_try_advisory_lock(:key)"),
                                  {"key": ADVISORY_KEY})
        connection.commit()
        if not taken:
            raise AlreadyRunning("another reconciliation holds the database lock")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                               {"key": ADVISORY_KEY})
            connection.commit()


def _lock_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        return Path(os.getcwd()) / ".sluice-reconcile.lock"
    return Path(database).resolve().with_name(f"{Path(database).name}.reconcile.lock")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another reconciliation holds {path}") from None
        yield
    finally:
        os.close(descriptor)
