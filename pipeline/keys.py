"""Object keys: derived from the document id only, so they never collide.

No user-supplied name or path ever enters a key; the extension comes from the
detected type.
"""

from __future__ import annotations

import mimetypes
import uuid

# mimetypes picks odd first choices for a few common types.
PREFERRED_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/tiff": ".tif",
    "text/plain": ".txt",
    "image/heic": ".heic",
    "image/avif": ".avif",
    "image/webp": ".webp",
    "message/rfc822": ".eml",
    "application/gzip": ".gz",
    "text/rtf": ".rtf",
    "image/vnd.microsoft.icon": ".ico",
}

ORIGINALS = "documents/"
THUMBNAILS = "thumbnails/"
THUMBNAIL_TYPE = "image/jpeg"


def extension_for(mime_type: str | None) -> str:
    if not mime_type:
        return ""
    return PREFERRED_EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type) or ""


def stored_file_name(document_id: uuid.UUID, mime_type: str | None) -> str:
    return f"{document_id}{extension_for(mime_type)}"


def original_key(prefix: str, document_id: uuid.UUID, mime_type: str | None) -> str:
    return f"{prefix}{ORIGINALS}{stored_file_name(document_id, mime_type)}"


def thumbnail_key(prefix: str, document_id: uuid.UUID) -> str:
    return f"{prefix}{THUMBNAILS}{document_id}.jpg"
