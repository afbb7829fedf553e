"""Settings and shared objects for commands, built once per invocation."""

from __future__ import annotations

from functools import cached_property

from celery import Celery

from pipeline.runtime import Runtime
from pipeline.settings import Settings


class CommandContext:
    def __init__(self) -> None:
        self.settings = Settings()

    @cached_property
    def runtime(self) -> Runtime:
        return Runtime.for_process(self.settings)

    @cached_property
    def celery(self) -> Celery:
        from workers.celery_app import make_celery

        return make_celery(self.settings)
