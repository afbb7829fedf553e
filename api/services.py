"""What every request shares: settings, the process's Runtime and its Celery app.

Built once per API process by ``create_app``; a request never makes a client,
an engine or a Celery app of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from pipeline.runtime import Runtime
from pipeline.settings import Settings
from workers.celery_app import enqueue_ingest


@dataclass
class Services:
    settings: Settings
    runtime: Runtime
    celery: Celery

    def enqueue(self, document_id: uuid.UUID, spool_ref: str | None) -> None:
        enqueue_ingest(self.celery, document_id, spool_ref)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
