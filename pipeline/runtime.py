"""The long-lived parts a process needs, built once and shared by every document.

Clients and engines are expensive to make (a boto3 client costs ~6 ms, an engine
far more) and cheap to reuse, so each process builds one ``Runtime`` and keeps it.
A forked worker process must build its own (``Runtime.for_process``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from pipeline.db.engine import make_engine
from pipeline.extract.sandbox import Sandbox
from pipeline.settings import Settings
from pipeline.spool import FolderSpool
from pipeline.storage import ObjectStore, open_store

_by_process: dict[int, Runtime] = {}


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_process(cls, settings: Settings) -> Runtime:
        """This process's runtime; a child forked from a parent gets a fresh one."""
        runtime = _by_process.get(os.getpid())
        if runtime is None or runtime.settings is not settings:
            runtime = _by_process[os.getpid()] = cls(settings)
        return runtime

    def session(self) -> Session:
        return self.sessions()

    @contextmanager
    def task_session(self) -> Iterator[Session]:
        """One connection for a document's claim, dedupe check and final commit.

        One checkout (and pool pre-ping) per document instead of one per step. On
        PostgreSQL the connection is in autocommit: each of those steps is a single
        statement (``documents`` writes a change and its event with one), so no
        BEGIN/COMMIT round trips. Only single-statement steps may use it; anything
        else takes ``session()``.
        """
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="AUTOCOMMIT")
            with Session(bind=connection, expire_on_commit=False) as session:
                yield session

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @cached_property
    def spool(self) -> FolderSpool:
        return FolderSpool(self.settings.spool)

    @cached_property
    def sandbox(self) -> Sandbox:
        return Sandbox(self.settings.parser_timeout_seconds, self.settings.parser_memory_mb)

    def close(self) -> None:
        if "sandbox" in self.__dict__:
            self.sandbox.stop()
        self.engine.dispose()
        _by_process.pop(os.getpid(), None)
