"""The document API: list, detail, download and thumbnail links, text, delete, bucket."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import CallerDep, require_token
from api.errors import ApiError, error_responses
from api.schemas import (
    BucketStatus,
    DocumentOut,
    DocumentPage,
    DocumentTextOut,
    DownloadUrl,
    Status,
    ThumbnailUrl,
)
from api.services import Services, ServicesDep
from pipeline import documents, keys, search
from pipeline.db.models import Document, DocumentText
from pipeline.documents import Actor
from pipeline.removal import StillProcessing, soft_delete
from pipeline.retry import BUSY, NO_FILE, NOT_FAILED, UNKNOWN, retry
from pipeline.serialize import document_dict

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/documents", tags=["documents"],
                   dependencies=[Depends(require_token)])

DEFAULT_PAGE = 50
MAX_PAGE = 500
INT32 = 2**31
ERRORS = error_responses(401, 404, 422, 503)


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL refuses NUL in text; say so as a 422 instead of failing later.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("out of range") from None


Text = Annotated[str | None, AfterValidator(_no_nul)]
Moment = Annotated[datetime | None, AfterValidator(_utc)]
DocumentId = uuid.UUID


@dataclass(frozen=True)
class ListFilters:
    category: str | None
    content_type_id: int | None
    object_id: str | None
    status: str | None
    uploaded_by: str | None
    uploaded_after: datetime | None
    uploaded_before: datetime | None
    q: str | None
    include_deleted: bool

    def conditions(self, dialect: str) -> list[Any]:
        conditions: list[Any] = []
        if not self.include_deleted:
            conditions.append(Document.is_active.is_(True))
        for name in ("category", "content_type_id", "object_id", "status", "uploaded_by"):
            value = getattr(self, name)
            if value is not None:
                conditions.append(getattr(Document, name) == value)
        if self.uploaded_after is not None:
            conditions.append(Document.uploaded_at >= self.uploaded_after)
        if self.uploaded_before is not None:
            conditions.append(Document.uploaded_at < self.uploaded_before)
        if self.q:
            conditions.append(search.matches(dialect, self.q))
        return conditions


def list_filters(
    category: Annotated[Text, Query(max_length=255)] = None,
    content_type_id: Annotated[int | None, Query(ge=-INT32, lt=INT32)] = None,
    object_id: Annotated[Text, Query(max_length=255)] = None,
    status: Annotated[Status | None, Query()] = None,
    uploaded_by: Annotated[Text, Query(max_length=255)] = None,
    uploaded_after: Annotated[Moment, Query(
        description="uploaded_at at or after this moment (ISO 8601)")] = None,
    uploaded_before: Annotated[Moment, Query(
        description="uploaded_at before this moment (ISO 8601)")] = None,
    q: Annotated[Text, Query(max_length=500, description=(
        'Full text over names and extracted text: words, "phrases", -excluded'))] = None,
    include_deleted: Annotated[bool, Query(description="Also list deleted documents.")] = False,
) -> ListFilters:
    return ListFilters(category, content_type_id, object_id, status, uploaded_by,
                       uploaded_after, uploaded_before, q, include_deleted)


@router.get("/bucket_status/", response_model=BucketStatus, responses=ERRORS)
def bucket_status(services: ServicesDep) -> dict[str, Any]:
    """The bucket's name and region, and whether Sluice can reach it now."""
    store = services.runtime.store
    return {"bucket_name": store.bucket, "region": store.region,
            "accessible": store.check_access()}


@router.get("/", response_model=DocumentPage, responses=ERRORS)
def list_documents(
    request: Request,
    filters: Annotated[ListFilters, Depends(list_filters)],
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, lt=INT32)] = 0,
) -> dict[str, Any]:
    """Documents, newest first, one page at a time (``limit``/``offset``)."""
    with services.runtime.session() as session:
        conditions = filters.conditions(session.get_bind().dialect.name)
        total = session.scalar(select(func.count()).select_from(Document).where(*conditions))
        rows = session.scalars(
            select(Document).where(*conditions)
            .order_by(Document.uploaded_at.desc(), Document.id.desc())
            .limit(limit).offset(offset)
        ).all()
    return {
        "count": total,
        "next": _page_url(request, offset + limit, limit) if offset + limit < total else None,
        "previous": _page_url(request, max(offset - limit, 0), limit) if offset else None,
        "results": [document_dict(row) for row in rows],
    }


def _page_url(request: Request, offset: int, limit: int) -> str:
    return str(request.url.include_query_params(offset=offset, limit=limit))


@router.get("/{document_id}/", response_model=DocumentOut, responses=ERRORS)
def get_document(document_id: DocumentId,
                 services: ServicesDep) -> dict[str, Any]:
    """One document, deleted ones included (``is_active`` false)."""
    with services.runtime.session() as session:
        return document_dict(_load(session, document_id))


@router.get("/{document_id}/download_url/", response_model=DownloadUrl,
            responses=error_responses(401, 404, 409, 422, 503))
def download_url(
    document_id: DocumentId,
    services: ServicesDep,
    expires_in: Annotated[int | None, Query(ge=1, lt=INT32, description=(
        "Seconds the link stays valid; default SLUICE_PRESIGN_EXPIRY_SECONDS, "
        "capped at SLUICE_PRESIGN_MAX_EXPIRY_SECONDS"))] = None,
) -> dict[str, Any]:
    """A pre-signed link that downloads the original, as an attachment under its name."""
    document, holder = _stored(services, document_id)

    seconds = _expiry(services, expires_in)
    url = services.runtime.store.presign_get(
        holder.s3_key, expires_in=seconds, filename=document.original_name,
        content_type=holder.mime_type or "application/octet-stream",
    )
    return {"id": document.id, "download_url": url, "file_name": document.original_name,
            "expires_at": _expires_at(seconds), "expires_in": seconds}


@router.get("/{document_id}/thumbnail_url/", response_model=ThumbnailUrl,
            responses=error_responses(401, 404, 409, 422, 503))
def thumbnail_url(
    document_id: DocumentId,
    services: ServicesDep,
    expires_in: Annotated[int | None, Query(ge=1, lt=INT32)] = None,
) -> dict[str, Any]:
    """A pre-signed link to the document's thumbnail (JPEG); 404 when it has none."""
    document, holder = _stored(services, document_id)
    if not holder.thumbnail_key:
        raise ApiError(404, "no_thumbnail", "no thumbnail can be made of this document")

    seconds = _expiry(services, expires_in)
    url = services.runtime.store.presign_get(
        holder.thumbnail_key, expires_in=seconds,
        filename=f"{document.original_name}.thumbnail.jpg", content_type=keys.THUMBNAIL_TYPE,
    )
    return {"id": document.id, "thumbnail_url": url, "expires_at": _expires_at(seconds),
            "expires_in": seconds}


@router.get("/{document_id}/text/", response_model=DocumentTextOut, responses=ERRORS)
def document_text(document_id: DocumentId,
                  services: ServicesDep) -> dict[str, Any]:
    """The text extracted from the document; null when it has none."""
    with services.runtime.session() as session:
        document = _live(session, document_id)
        holder = _content_holder(session, document)
        row = session.get(DocumentText, holder.id)
        text = row.content if row is not None else None
    return {"id": document.id, "text_length": holder.text_length, "text": text}


@router.delete("/{document_id}/", status_code=204, response_class=Response,
               responses=error_responses(401, 404, 409, 422, 503))
def delete_document(document_id: DocumentId, caller: CallerDep,
                    services: ServicesDep) -> Response:
    """Soft delete in the database, then remove the original and thumbnail from the bucket.

    Deleting again is harmless, and retries a bucket removal that failed.
    """
    with services.runtime.session() as session:
        try:
            removal = soft_delete(session, document_id, Actor.here(),
                                  token=caller.token_fingerprint)
        except StillProcessing:
            raise ApiError(409, "still_processing",
                           "the document is still being processed; delete it once its "
                           "status is final") from None
    if removal is None:
        raise ApiError(404, "not_found", f"no document {document_id}")

    # A TransientError here answers 503; the row stays deleted and a second
    # DELETE removes what the bucket refused this time.
    for key in removal.object_keys:
        services.runtime.store.delete(key)
    return Response(status_code=204)


@router.post("/{document_id}/retry/", status_code=202, response_model=DocumentOut,
             responses=error_responses(401, 404, 409, 422, 503))
def retry_document(document_id: DocumentId, services: ServicesDep) -> dict[str, Any]:
    """Process a failed document again from its quarantined file, under the same id.

    For a refusal whose reason has gone away (a limit raised, a type allowed, a
    reader that timed out on a busy machine); poll the document as after an upload.
    """
    (outcome,) = retry(services.runtime, [document_id], Actor.here(), services.enqueue)
    if outcome.outcome == UNKNOWN:
        raise ApiError(404, "not_found", f"no document {document_id}")
    if outcome.outcome == NOT_FAILED:
        raise ApiError(409, "not_failed", f"only a failed document can be retried; "
                                          f"{outcome.detail}")
    if outcome.outcome == BUSY:
        raise ApiError(409, "retry_in_progress", "another retry of this document is "
                                                 "under way")
    if outcome.outcome == NO_FILE:
        raise ApiError(409, "nothing_to_retry", f"the document has {outcome.detail}")
    with services.runtime.session() as session:
        return document_dict(_load(session, document_id))


def _load(session: Session, document_id: uuid.UUID) -> Document:
    document = documents.get(session, document_id)
    if document is None:
        raise ApiError(404, "not_found", f"no document {document_id}")
    return document


def _live(session: Session, document_id: uuid.UUID) -> Document:
    document = _load(session, document_id)
    if not document.is_active:
        raise ApiError(404, "deleted", f"document {document_id} was deleted")
    return document


def _content_holder(session: Session, document: Document) -> Document:
    """The document whose objects hold this one's content: itself, or its original."""
    if document.status == "duplicate" and document.duplicate_of is not None:
        original = documents.get(session, document.duplicate_of)
        if original is not None:
            return original
    return document


def _stored(services: Services, document_id: uuid.UUID) -> tuple[Document, Document]:
    """A live document and the one holding its objects; 409 until they are stored."""
    with services.runtime.session() as session:
        document = _live(session, document_id)
        holder = _content_holder(session, document)
    if not holder.s3_key:
        raise ApiError(409, "not_stored", _not_stored_message(document))
    return document, holder


def _not_stored_message(document: Document) -> str:
    if document.status == "failed":
        return f"the document failed ({document.error_code}); nothing is stored"
    return f"the document is {document.status}; try again once it is stored"


def _expiry(services: Services, requested: int | None) -> int:
    settings = services.settings
    return min(requested or settings.presign_expiry_seconds,
               settings.presign_max_expiry_seconds)


def _expires_at(seconds: int) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
