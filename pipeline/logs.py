"""Log lines an operator can grep: every line of a task carries its ids."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "sluice_log_context", default=None
)

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(sluice_context)s"


class ContextFilter(logging.Filter):
    """Appends ``task_id=… document_id=…`` of the running task to each line."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get() or {}
        message = record.getMessage() if fields else ""
        extra = " ".join(f"{key}={value}" for key, value in fields.items()
                         if f"{key}=" not in message)
        record.sluice_context = f" {extra}" if extra else ""
        return True


@contextmanager
def bind_context(**fields: str) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that says nothing about documents.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "PIL", "alembic.runtime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
