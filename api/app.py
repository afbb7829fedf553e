"""The app factory: one FastAPI app per process, its services built once."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from api.auth import TokenCheck
from api.errors import install_error_handlers
from api.routes import documents, files, health, reconciliation, upload
from api.services import Services
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.storage.local import LocalStore

log = logging.getLogger(__name__)

# Every router the app serves; add one here (or pass extra_routers) to extend it.
ROUTERS: list[APIRouter] = [health.router, upload.router, documents.router, files.router,
                             reconciliation.router]


def create_app(settings: Settings, extra_routers: Iterable[APIRouter] = ()) -> FastAPI:
    """The API for ``settings``; clients, engine and Celery app are made here, once."""
    from workers.celery_app import make_celery

    runtime = Runtime(settings)
    services = Services(settings, runtime, make_celery(settings))
    _sign_local_downloads(runtime, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.close()

    app = FastAPI(
        title="Sluice",
        summary="Documents from a folder, HTTP or archives into an encrypted bucket.",
        version="1",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.token_check = TokenCheck(settings.api_tokens)
    install_error_handlers(app)
    for router in (*ROUTERS, *extra_routers):
        app.include_router(router)
    _publish_categories(app, settings.categories)
    if not settings.api_tokens:
        log.warning("no API tokens configured; the API refuses every request "
                    "until SLUICE_API_TOKENS is set")
    return app


def _sign_local_downloads(runtime: Runtime, settings: Settings) -> None:
    settings.spool.mkdir(parents=True, exist_ok=True)
    store = runtime.store
    if isinstance(store, LocalStore):
        store.configure_signing(settings.signing_key, settings.public_url)


def _publish_categories(app: FastAPI, categories: tuple[str, ...]) -> None:
    """Name this installation's categories in the upload's OpenAPI description."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = copy.deepcopy(FastAPI.openapi(app))
            operation = schema["paths"][upload.UPLOAD_PATH]["post"]
            form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
            form["properties"]["category"]["enum"] = list(categories)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
