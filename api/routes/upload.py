"""``POST /api/documents/upload/``: the HTTP drop endpoint.

The body is streamed into the spool as it arrives (``api.multipart``); only when
the whole request is in and its fields check out are the files recorded, all
of them or none (``pipeline.uploads``), and queued like the watcher's files.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.auth import Caller, CallerDep
from api.errors import ApiError, error_responses
from api.multipart import (
    FORM_OVERHEAD_BYTES,
    MAX_FILES,
    FieldTooLarge,
    MalformedUpload,
    MultipartReader,
    UploadForm,
    boundary_of,
)
from api.schemas import UploadBatch, UploadedDocument
from api.services import Services, ServicesDep
from pipeline.db.models import Document
from pipeline.documents import Actor
from pipeline.errors import EmptyFile, TooLarge, UnsupportedType
from pipeline.intake import Intake
from pipeline.serialize import document_dict
from pipeline.uploads import ChecksumMismatch, Upload, accept_uploads

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/documents", tags=["documents"])
UPLOAD_PATH = "/api/documents/upload/"

SHA256_HEADER = "x-content-sha256"
SHA256_FORMAT = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_TEXT_FIELD_CHARS = 255
MAX_TAGS = 100
INT32 = 2**31
# After refusing an upload part-way, read (and drop) up to this much of the rest,
# so that a client which sends its whole body before reading still sees the answer.
DRAIN_BYTES = 16 * 1024 * 1024

UPLOAD_FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "One or several files, each in a part named 'file'."},
        "category": {"type": "string"},
        "description": {"type": "string"},
        "tags": {"type": "string", "description": 'A JSON array of strings: ["a", "b"]'},
        "uploaded_by": {"type": "string", "maxLength": MAX_TEXT_FIELD_CHARS},
        "content_type_id": {"type": "integer", "minimum": -INT32, "maximum": INT32 - 1},
        "object_id": {"type": "string", "maxLength": MAX_TEXT_FIELD_CHARS},
        "sha256": {"type": "string", "pattern": SHA256_FORMAT.pattern,
                   "description": "The SHA-256 of the file, one per file, in order."},
    },
}


@router.post(
    "/upload/",
    status_code=202,
    response_model=UploadedDocument | UploadBatch,
    summary="Upload one or several documents",
    responses=error_responses(400, 401, 408, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": UPLOAD_FORM_SCHEMA}},
        },
        "parameters": [{
            "name": "X-Content-SHA256", "in": "header", "required": False,
            "description": "The SHA-256 of the file (comma-separated, one per file).",
            "schema": {"type": "string"},
        }],
    },
)
async def upload(request: Request, caller: CallerDep,
                 services: ServicesDep) -> JSONResponse:
    """Stream the files into Sluice; answers 202 with the new document(s).

    A file whose content Sluice already stores comes back at once as a
    ``duplicate``; the others come back ``received`` and are processed by the
    workers: poll ``poll_url`` until the status is final.
    """
    settings = services.settings
    boundary = _check_headers(request, settings.max_file_size)
    reader = MultipartReader(
        boundary,
        lambda document_id: services.runtime.spool.open_incoming(
            document_id, settings.max_file_size),
        max_request_bytes(settings.max_file_size),
    )

    stream = request.stream()
    try:
        form = await reader.read(stream)
    except TooLarge as error:
        await _drain(stream)
        raise ApiError(413, "too_large", str(error)) from None
    except FieldTooLarge as error:
        # A form field is not the file: an invalid field, like any other (422).
        await _drain(stream)
        raise ApiError(422, error.code, str(error)) from None
    except MalformedUpload as error:
        raise ApiError(400, "malformed_upload", str(error)) from None
    except TimeoutError:
        log.info("upload stalled token=%s", caller.token_fingerprint)
        raise ApiError(408, "upload_stalled", "the upload stopped arriving") from None
    except ClientDisconnect:
        log.info("upload cut off token=%s", caller.token_fingerprint)
        raise ApiError(400, "upload_incomplete", "the upload was cut off") from None

    try:
        uploads = _uploads_from(form, request.headers.get(SHA256_HEADER),
                                settings.categories)
    except ApiError:
        await run_in_threadpool(form.abort)
        raise
    recorded = await run_in_threadpool(_accept, services, uploads, caller)
    return _answer(recorded)


def max_request_bytes(max_file_size: int) -> int:
    """The most a request can carry: the limit is per file (each file's own is
    checked as it streams in), so several files may add up to more than one."""
    return MAX_FILES * max_file_size + FORM_OVERHEAD_BYTES


def _check_headers(request: Request, max_file_size: int) -> bytes:
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
    except ValueError:
        raise ApiError(415, "unsupported_media_type",
                       "send the upload as multipart/form-data") from None
    except MalformedUpload as error:
        raise ApiError(400, "malformed_upload", str(error)) from None

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_request_bytes(max_file_size):
        raise ApiError(413, "too_large",
                       f"the request is larger than {MAX_FILES} files of the limit of "
                       f"{max_file_size} bytes could be")
    return boundary


async def _drain(stream: Any) -> None:
    drained = 0
    try:
        async for chunk in stream:
            drained += len(chunk)
            if drained > DRAIN_BYTES:
                return
    except (ClientDisconnect, OSError):
        return


def _uploads_from(form: UploadForm, header_sha256: str | None,
                  categories: tuple[str, ...]) -> list[Upload]:
    """Check the form's fields; an ApiError (422) names the first one that is wrong."""
    if not form.files:
        raise ApiError(422, "missing_file", "send at least one file in a part named 'file'")
    details = _intake_details(form, categories)
    declared = _declared_hashes(form, header_sha256)

    uploads = []
    for position, part in enumerate(form.files):
        intake = Intake(source="http", original_name=part.filename or "unnamed", **details)
        uploads.append(Upload(part.incoming, intake,
                              declared[position] if declared else None))
    return uploads


def _intake_details(form: UploadForm, categories: tuple[str, ...]) -> dict[str, Any]:
    return {
        "category": _category(form, categories),
        "description": _text(form, "description", limit=None),
        "tags": _tags(form),
        "uploaded_by": _text(form, "uploaded_by"),
        "content_type_id": _content_type_id(form),
        "object_id": _text(form, "object_id"),
    }


def _text(form: UploadForm, name: str, limit: int | None = MAX_TEXT_FIELD_CHARS) -> str | None:
    value = form.value(name)
    if value is None or value == "":
        return None
    if "\x00" in value:
        raise ApiError(422, "invalid_field", f"{name} contains a NUL character")
    if limit is not None and len(value) > limit:
        raise ApiError(422, "invalid_field", f"{name} is longer than {limit} characters")
    return value


def _category(form: UploadForm, allowed: tuple[str, ...]) -> str | None:
    value = _text(form, "category")
    if value is not None and value not in allowed:
        raise ApiError(422, "invalid_category",
                       f"category must be one of: {', '.join(allowed)}")
    return value


def _tags(form: UploadForm) -> list[str]:
    raw = _text(form, "tags", limit=None)
    if raw is None:
        return []
    try:
        tags = json.loads(raw)
    except ValueError:
        tags = None
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ApiError(422, "invalid_tags", 'tags must be a JSON array of strings: ["a", "b"]')
    if len(tags) > MAX_TAGS or any(len(tag) > MAX_TEXT_FIELD_CHARS or "\x00" in tag
                                   for tag in tags):
        raise ApiError(422, "invalid_tags",
                       f"at most {MAX_TAGS} tags of at most {MAX_TEXT_FIELD_CHARS} characters")
    return tags


def _content_type_id(form: UploadForm) -> int | None:
    value = _text(form, "content_type_id")
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not -INT32 <= number < INT32:
        raise ApiError(422, "invalid_field", "content_type_id must be a 32-bit integer")
    return number


def _declared_hashes(form: UploadForm, header: str | None) -> list[str] | None:
    declared = [value.strip() for value in form.fields.get("sha256", []) if value.strip()]
    if header:
        declared = [value.strip() for value in header.split(",") if value.strip()] + declared
    if not declared:
        return None
    if len(declared) != len(form.files):
        raise ApiError(422, "invalid_sha256",
                       f"{len(declared)} SHA-256 values declared for {len(form.files)} files")
    if not all(SHA256_FORMAT.match(value) for value in declared):
        raise ApiError(422, "invalid_sha256", "a SHA-256 is 64 hexadecimal characters")
    return declared


def _accept(services: Services, uploads: list[Upload], caller: Caller) -> list[Document]:
    """Record the uploads (all or none), then queue the ones to process."""
    try:
        recorded = accept_uploads(services.runtime, uploads, Actor.here(),
                                  via="http", token=caller.token_fingerprint)
    except ChecksumMismatch as error:
        raise ApiError(400, "checksum_mismatch", str(error)) from None
    except UnsupportedType as error:
        raise ApiError(415, "unsupported_type", error.message) from None
    except EmptyFile as error:
        raise ApiError(422, error.code, error.message) from None

    for document in recorded:
        if document.status == "received":
            _enqueue(services, document)
    return recorded


def _enqueue(services: Services, document: Document) -> None:
    try:
        services.enqueue(document.id, document.spool_ref)
    except Exception:  # noqa: BLE001 - the row is the ledger; the sweep requeues it
        log.warning("enqueue failed document_id=%s; the sweep will requeue it",
                    document.id, exc_info=True)


def _answer(recorded: list[Document]) -> JSONResponse:
    answers = [_uploaded(document) for document in recorded]
    body: dict[str, Any] = answers[0] if len(answers) == 1 else {
        "count": len(answers), "documents": answers}
    return JSONResponse(body, status_code=202, headers={"Location": answers[0]["poll_url"]})


def _uploaded(document: Document) -> dict[str, Any]:
    return {**document_dict(document), "poll_url": f"/api/documents/{document.id}/"}
