"""``/healthz`` (the process answers) and ``/readyz`` (its services answer too)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.errors import error_responses
from api.schemas import Health, Readiness
from api.services import Services, ServicesDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# A readiness probe that hangs is as bad as one that fails.
BROKER_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """The API process is alive (says nothing about its services)."""
    return {"status": "alive"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Not ready"},
                       **error_responses(422)})
def readyz(services: ServicesDep) -> JSONResponse:
    """Database, broker and bucket reachable: 200; otherwise 503 with what failed."""
    checks = {
        "database": _check(lambda: _database_answers(services)),
        "broker": _check(lambda: _broker_answers(services)),
        "bucket": _check(services.runtime.store.check_access),
    }
    ready = all(check["ok"] for check in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _check(probe: Callable[[], bool]) -> dict[str, object]:
    try:
        ok = probe()
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness check failed error=%s", type(error).__name__)
        return {"ok": False, "detail": type(error).__name__}
    return {"ok": ok, "detail": None if ok else "not reachable"}


def _database_answers(services: Services) -> bool:
    with services.runtime.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return True


def _broker_answers(services: Services) -> bool:
    with services.celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        # Redis connects lazily; opening a channel makes it really talk to the server.
        channel = connection.default_channel
    return channel is not None
