"""Shared steps of the reconciliation tests: runs, findings, fresh documents."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import update

from pipeline.db.models import Document, utcnow
from pipeline.reconcile import RunOptions, RunResult, reconcile
from pipeline.reconcile.records import iter_findings
from tests.conftest import CORPUS
from tests.support.stack import Stack

# A one-page PDF from the corpus; a comment after %%EOF makes each copy unique
# content (so it is stored, not a duplicate) and still a valid PDF with a thumbnail.
SMALL_PDF = CORPUS / "pdf" / "hello_world_rotated.pdf"


def run(stack: Stack, **overrides: Any) -> RunResult:
    from workers.celery_app import enqueue_ingest

    options = RunOptions.from_settings(stack.settings, trigger="test", **overrides)
    return reconcile(stack.runtime, options,
                     enqueue=lambda document_id: enqueue_ingest(stack.app, document_id))


def findings(stack: Stack, result: RunResult) -> list[dict[str, Any]]:
    with stack.runtime.engine.connect() as connection:
        return list(iter_findings(connection, result.run_id))


def about(found: list[dict[str, Any]], document_id: uuid.UUID | None = None,
          keys: set[str] | None = None) -> set[tuple[str, str | None, str | None]]:
    """(kind, role, key) of the findings about one document or some keys."""
    return {(f["kind"], f["role"], f["key"]) for f in found
            if (document_id is not None and f["document_id"] == str(document_id))
            or (keys is not None and f["key"] in keys)}


def unique_pdf(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scan-{uuid.uuid4().hex[:8]}.pdf"
    path.write_bytes(SMALL_PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode())
    return path


def stored_document(stack: Stack, folder: Path) -> Document:
    """A freshly ingested, stored document with its original and thumbnail."""
    document_id = stack.ingest(unique_pdf(folder))
    document = stack.wait([document_id])[document_id]
    assert document.status == "stored", document.error_message
    assert document.thumbnail_key is not None
    return document


def soft_delete_row(stack: Stack, document_id: uuid.UUID) -> None:
    """The row half of the API's delete, without touching the bucket."""
    with stack.runtime.session() as session:
        session.execute(update(Document).where(Document.id == document_id)
                        .values(is_active=False, deleted_at=utcnow(),
                                updated_at=utcnow()))
        session.commit()


def delete_document(stack: Stack, document: Document) -> None:
    """Both halves of the API's delete: the row soft-deleted, the objects removed."""
    soft_delete_row(stack, document.id)
    for key in (document.s3_key, document.thumbnail_key):
        if key:
            stack.runtime.store.delete(key)
