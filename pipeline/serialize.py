"""A document as users see it: the fields of INTERFACE.md, in one place."""

from __future__ import annotations

from typing import Any

from pipeline.db.models import Document

PUBLIC_FIELDS = (
    "id", "status", "original_name", "file_name", "file_size", "sha256", "mime_type",
    "s3_bucket", "s3_key", "thumbnail_key", "page_count", "encrypted", "text_length",
    "category", "description", "tags", "uploaded_by", "content_type_id", "object_id",
    "source", "source_path", "uploaded_at", "updated_at", "is_active", "duplicate_of",
    "source_modified_at", "migration_run_id",
)


TIMESTAMP_FIELDS = ("uploaded_at", "updated_at", "source_modified_at")


def document_dict(document: Document) -> dict[str, Any]:
    """JSON-ready: UUIDs as strings, timestamps in ISO 8601 UTC."""
    out: dict[str, Any] = {}
    for name in PUBLIC_FIELDS:
        value = getattr(document, name)
        if name in ("id", "duplicate_of", "migration_run_id") and value is not None:
            value = str(value)
        elif name in TIMESTAMP_FIELDS and value is not None:
            value = value.isoformat().replace("+00:00", "Z")
        out[name] = value
    out["tags"] = list(document.tags or [])
    out["error"] = (
        {"code": document.error_code, "message": document.error_message}
        if document.error_code else None
    )
    return out
