"""Secrets that Sluice makes for itself once and keeps in a file only its user can read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_BYTES = 32


def read_or_create_secret(path: Path) -> str:
    """The secret kept in ``path``; the first process to ask makes it (mode 0600).

    The new secret is written to a private temporary file and linked into place,
    so two processes starting at once agree on one secret and no reader ever
    sees a half-written file.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(SECRET_BYTES))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            pass  # another process made it first; theirs is the secret
    finally:
        partial.unlink(missing_ok=True)

    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"the secret file {path} is empty; delete it to make a new one")
    return value
