"""Accepting streamed uploads: every file of a request is kept, or none of them.

The HTTP drop endpoint writes each file into the spool as it arrives
(``Spool.open_incoming``), then hands the lot here. For each file this module

    verifies  the SHA-256 the client declared, if any, and that it is not empty
    detects   the type from the content, refusing types Sluice does not accept
    dedupes   content Sluice already stores becomes a ``duplicate`` at once
    records   one row per file, all in one transaction, the files renamed into place

Nothing is enqueued here: the caller enqueues the documents that came back
``received`` once this returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline import documents, keys
from pipeline.db.models import Document
from pipeline.detect import HEAD_BYTES, CorruptContainer, detect, is_allowed
from pipeline.documents import Actor
from pipeline.errors import EmptyFile, UnsupportedType
from pipeline.intake import Intake
from pipeline.runtime import Runtime
from pipeline.spool import IncomingFile

log = logging.getLogger(__name__)


class ChecksumMismatch(Exception):
    """The bytes that arrived are not the bytes the client declared."""


@dataclass
class Upload:
    """One file of a request: its spool entry, what came with it, the hash it claims."""

    incoming: IncomingFile
    intake: Intake
    declared_sha256: str | None = None
    mime_type: str | None = None


def accept_uploads(runtime: Runtime, uploads: list[Upload], actor: Actor,
                   **event_detail: Any) -> list[Document]:
    """Record every upload, or raise and keep none of them.

    Raises ChecksumMismatch, EmptyFile or UnsupportedType before anything is
    recorded; on any error every spooled file is removed. A damaged file of an
    accepted type is recorded like any other: the worker judges it and
    quarantines it, whatever way it came in.
    """
    try:
        for upload in uploads:
            _verify(runtime, upload)
        return _record(runtime, uploads, actor, event_detail)
    except BaseException:
        for upload in uploads:
            upload.incoming.abort()
        raise


def _verify(runtime: Runtime, upload: Upload) -> None:
    spooled = upload.incoming.finish()
    declared = upload.declared_sha256
    if declared is not None and declared.lower() != spooled.sha256:
        raise ChecksumMismatch(
            f"{upload.intake.original_name}: SHA-256 is {spooled.sha256}, "
            f"the request declared {declared}"
        )
    if spooled.size == 0:
        raise EmptyFile(f"{upload.intake.original_name} is empty (0 bytes)")

    with upload.incoming.path.open("rb") as source:
        head = source.read(HEAD_BYTES)
    try:
        mime_type = detect(upload.incoming.path, head, upload.intake.original_name).mime_type
    except CorruptContainer as error:
        mime_type = error.mime_type  # a damaged zip or docx: the worker quarantines it
    if not is_allowed(mime_type, runtime.settings.allowed_types):
        raise UnsupportedType(
            f"{upload.intake.original_name}: {mime_type} is not an accepted type"
        )
    upload.mime_type = mime_type


def _record(runtime: Runtime, uploads: list[Upload], actor: Actor,
            event_detail: dict[str, Any]) -> list[Document]:
    # The renames happen inside the transaction: if the commit fails, the
    # caller's abort removes the renamed files too, so no file is left without
    # its row and no row without its file.
    with runtime.session() as session:
        recorded = [_record_one(session, upload, actor, event_detail) for upload in uploads]
        session.commit()
    for document in recorded:
        log.info("received document_id=%s source=http status=%s bytes=%s",
                 document.id, document.status, document.file_size)
    return recorded


def _record_one(session: Any, upload: Upload, actor: Actor,
                event_detail: dict[str, Any]) -> Document:
    spooled = upload.incoming.finish()
    document_id = upload.incoming.document_id
    columns = {**upload.intake.columns(), "id": document_id, "file_size": spooled.size,
               "sha256": spooled.sha256, "mime_type": upload.mime_type}

    original = documents.find_stored(session, spooled.sha256)
    if original is not None:
        upload.incoming.abort()
        document = documents.add_duplicate(
            session, actor, original,
            file_name=keys.stored_file_name(document_id, upload.mime_type), **columns,
        )
    else:
        upload.incoming.commit()
        document = documents.add_received(session, actor, spool_ref=spooled.ref, **columns)
    documents.record_event(session, document_id, "uploaded", actor, **event_detail)
    return document
