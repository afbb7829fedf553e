"""The shapes of the API's answers, as OpenAPI publishes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.db.models import SOURCES, STATUSES

Status = Literal[STATUSES]  # type: ignore[valid-type]
Source = Literal[SOURCES]  # type: ignore[valid-type]


class DocumentError(BaseModel):
    code: str
    message: str | None


class DocumentOut(BaseModel):
    """A document: the fields of INTERFACE.md."""

    id: uuid.UUID
    status: Status
    original_name: str
    file_name: str
    file_size: int | None
    sha256: str | None
    mime_type: str | None
    s3_bucket: str | None
    s3_key: str | None
    thumbnail_key: str | None
    page_count: int | None
    encrypted: bool | None
    text_length: int | None
    category: str | None
    description: str | None
    tags: list[str]
    uploaded_by: str | None
    content_type_id: int | None
    object_id: str | None
    source: Source
    source_path: str | None
    uploaded_at: datetime
    updated_at: datetime
    is_active: bool
    duplicate_of: uuid.UUID | None
    error: DocumentError | None
    source_modified_at: datetime | None = Field(
        description="The file's modification time at its source (kept by migrate).")
    migration_run_id: uuid.UUID | None = Field(
        description="The migration run that brought the document.")


class UploadedDocument(DocumentOut):
    poll_url: str = Field(description="GET this until status is stored, duplicate or failed.")


class UploadBatch(BaseModel):
    """The answer to an upload of several files, in the order they were sent."""

    count: int
    documents: list[UploadedDocument]


class DocumentPage(BaseModel):
    """One page of a list, newest first; ``count`` is the total over all pages."""

    count: int
    next: str | None
    previous: str | None
    results: list[DocumentOut]




class DownloadUrl(BaseModel):
    id: uuid.UUID
    download_url: str
    file_name: str
    expires_at: datetime
    expires_in: int


class ThumbnailUrl(BaseModel):
    id: uuid.UUID
    thumbnail_url: str
    expires_at: datetime
    expires_in: int


class DocumentTextOut(BaseModel):
    id: uuid.UUID
    text_length: int | None
    text: str | None


class BucketStatus(BaseModel):
    bucket_name: str
    region: str | None
    accessible: bool


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class Health(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
