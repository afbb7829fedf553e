"""Every error leaves the API as ``{"error": {"code", "message"}}``; no trace ever does.

Handlers cover the errors routes raise on purpose (``ApiError``), Starlette's own
(404 for unknown paths, 405), request validation (422), the pipeline's service
errors (503) and, last, anything unexpected (500, logged here once with its trace).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.errors import TransientError

log = logging.getLogger(__name__)

# Codes for statuses raised without one of our own (unknown path, wrong method...).
DEFAULT_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 409: "conflict",
    413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """An answer other than success, chosen on purpose by a route."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses a route can answer with."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


async def _on_api_error(_: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.code, error.message, error.headers)


async def _on_http_exception(_: Request, error: StarletteHTTPException) -> JSONResponse:
    code = DEFAULT_CODES.get(error.status_code, "error")
    message = error.detail if isinstance(error.detail, str) else HTTPStatus(
        error.status_code).phrase
    return error_response(error.status_code, code, message, getattr(error, "headers", None))


async def _on_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for problem in error.errors()[:5]:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        problems.append(f"{where}: {problem.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


async def _on_service_error(request: Request, error: Exception) -> JSONResponse:
    log.warning("service unavailable path=%s error=%s", request.url.path,
                type(error).__name__)
    return error_response(503, "unavailable",
                          "a service Sluice depends on is unavailable; try again shortly",
                          {"Retry-After": "5"})


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error path=%s", request.url.path, exc_info=error)
    return error_response(500, "internal_error", "Sluice failed unexpectedly; see its log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for service_error in (TransientError, OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(service_error, _on_service_error)
    app.add_exception_handler(Exception, _on_unexpected)
