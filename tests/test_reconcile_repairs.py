"""Repairs do what they claim, only when asked, and a dry run changes nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline import documents
from pipeline.db.models import Document, DocumentEvent
from pipeline.documents import Actor
from pipeline.reconcile.findings import expand_repairs
from tests.reconcile_helpers import (
    delete_document,
    findings,
    run,
    soft_delete_row,
    stored_document,
    unique_pdf,
)
from tests.support.raw_bucket import RawBucket
from tests.support.stack import Stack

QUIET = {"sample_size": 0, "stuck_after_seconds": 24 * 3600, "orphan_grace_seconds": 0}


def results_by_key(found: list[dict]) -> dict[str, tuple[str, str | None]]:
    return {f["key"]: (f["kind"], f["repair_result"]) for f in found if f["key"]}


def test_dry_run_plans_repairs_and_changes_nothing(stack: Stack,
                                                   tmp_path: Path) -> None:
    raw = RawBucket(stack.runtime.store)
    deleted = stored_document(stack, tmp_path)
    soft_delete_row(stack, deleted.id)
    stray = f"{stack.settings.storage.prefix}documents/{uuid.uuid4()}.pdf"
    raw.put(stray, b"stray")
    try:
        asked = expand_repairs(["all", "orphan_object"])
        found = findings(stack, run(stack, repairs=asked, dry_run=True, **QUIET))
        assert raw.exists(deleted.s3_key) and raw.exists(deleted.thumbnail_key)
        assert raw.exists(stray)
    finally:
        raw.delete(stray)
        delete_document(stack, deleted)

    planned = results_by_key(found)
    assert planned[deleted.s3_key] == ("deleted_but_present", "dry_run")
    assert planned[deleted.thumbnail_key] == ("deleted_but_present", "dry_run")
    assert planned[stray] == ("orphan_object", "dry_run")


def test_repairs_delete_leftovers_and_mark_missing_but_keep_orphans_unless_named(
        stack: Stack, tmp_path: Path) -> None:
    raw = RawBucket(stack.runtime.store)
    deleted = stored_document(stack, tmp_path)
    soft_delete_row(stack, deleted.id)
    lost = stored_document(stack, tmp_path)
    raw.delete(lost.s3_key)
    stray = f"{stack.settings.storage.prefix}thumbnails/{uuid.uuid4()}.jpg"
    raw.put(stray, b"stray")
    try:
        safe = results_by_key(findings(stack, run(stack, repairs=("all",), **QUIET)))
        stray_kept = raw.exists(stray)
        named = results_by_key(findings(stack, run(stack, repairs=("orphan_object",),
                                                   **QUIET)))
        again = results_by_key(findings(stack, run(stack, repairs=("all",), **QUIET)))
    finally:
        raw.delete(stray)
        delete_document(stack, lost)

    assert safe[deleted.s3_key] == ("deleted_but_present", "done")
    assert safe[deleted.thumbnail_key] == ("deleted_but_present", "done")
    assert not raw.exists(deleted.s3_key) and not raw.exists(deleted.thumbnail_key)
    assert "object_deleted" in stack.events(deleted.id)

    assert safe[lost.s3_key] == ("missing_object", "done")
    marked = stack.document(lost.id)
    assert (marked.status, marked.error_code) == ("stored", "missing_object")
    assert lost.s3_key in marked.error_message
    assert stack.events(lost.id).count("missing_object") == 1

    assert safe[stray] == ("orphan_object", None) and stray_kept
    assert named[stray] == ("orphan_object", "done")
    assert stray not in again and deleted.s3_key not in again
    assert again[lost.s3_key] == ("missing_object", "skipped"), "marked once, not twice"


def test_stuck_documents_requeued_end_stored_exactly_once(stack: Stack,
                                                          tmp_path: Path) -> None:
    from workers.celery_app import enqueue_ingest

    waiting = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    abandoned = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    with stack.runtime.session() as session:
        documents.claim(session, abandoned, Actor("dead-host:1", "dead-task"), 1)
    time.sleep(1.5)

    result = run(stack, repairs=("stuck",), sample_size=0, stuck_after_seconds=1)
    # The broker may still hold the dead worker's message too: a second delivery
    # must change nothing.
    enqueue_ingest(stack.app, abandoned)
    final = stack.wait([waiting, abandoned])

    repaired = {f["document_id"]: f["repair_result"] for f in findings(stack, result)
                if f["kind"] == "stuck"}
    assert repaired[str(waiting)] == repaired[str(abandoned)] == "done"
    for document_id in (waiting, abandoned):
        assert final[document_id].status == "stored"
        events = stack.events(document_id)
        assert events.count("stored") == 1
        assert "requeued" in events
        prefix = f"{stack.settings.storage.prefix}documents/{document_id}"
        assert stack.object_keys(prefix) == [final[document_id].s3_key]
    with stack.runtime.session() as session:
        by_reconcile = session.scalars(
            select(DocumentEvent.detail).where(DocumentEvent.document_id == waiting,
                                               DocumentEvent.event == "requeued")).all()
    assert by_reconcile[0]["run_id"] == result.run_id
    assert stack.document(waiting).status == "stored"


def test_missing_object_mark_shows_in_the_public_document(stack: Stack,
                                                          tmp_path: Path) -> None:
    from pipeline.serialize import document_dict

    raw = RawBucket(stack.runtime.store)
    lost = stored_document(stack, tmp_path)
    raw.delete(lost.thumbnail_key)
    try:
        run(stack, repairs=("missing_object",), **QUIET)
        public = document_dict(stack.document(lost.id))
    finally:
        delete_document(stack, lost)

    assert public["status"] == "stored"
    assert public["error"]["code"] == "missing_object"
    assert lost.thumbnail_key in public["error"]["message"]
    with stack.runtime.session() as session:
        assert session.get(Document, lost.id).is_active is False


def test_objects_handed_to_a_duplicate_are_neither_left_over_nor_deleted(
        stack: Stack, tmp_path: Path) -> None:
    from pipeline.removal import soft_delete

    raw = RawBucket(stack.runtime.store)
    scan = unique_pdf(tmp_path)
    original = stack.wait([stack.ingest(scan)]).popitem()[1]
    copy_id = stack.ingest(scan)
    assert stack.wait([copy_id])[copy_id].status == "duplicate"
    # Deleting the stored one hands its objects to its duplicate (the API's delete).
    with stack.runtime.session() as session:
        removal = soft_delete(session, original.id, Actor.here())
    assert removal.heir == copy_id and removal.object_keys == []
    heir = stack.document(copy_id)
    try:
        everything = expand_repairs(["all", "orphan_object"])
        handed = findings(stack, run(stack, repairs=everything, **QUIET))
        kept = [raw.exists(key) for key in (original.s3_key, original.thumbnail_key)]
        data = raw.read(heir.s3_key)
        raw.delete(heir.s3_key)
        try:
            lost = findings(stack, run(stack, **QUIET))
        finally:
            raw.restore(heir.s3_key, data, original.id, "application/pdf")
    finally:
        delete_document(stack, heir)

    assert (heir.status, heir.s3_key) == ("stored", original.s3_key)
    assert [f for f in handed if f["document_id"] in (str(original.id), str(copy_id))
            or f["key"] in (original.s3_key, original.thumbnail_key)] == []
    assert kept == [True, True], "no repair deletes what a live document names"
    missing = [(f["kind"], f["document_id"], f["key"]) for f in lost
               if f["key"] == heir.s3_key]
    assert missing == [("missing_object", str(copy_id), heir.s3_key)]


def test_unencrypted_object_is_encrypted_in_place_with_the_same_bytes(
        stack: Stack, tmp_path: Path) -> None:
    raw = RawBucket(stack.runtime.store)
    if not raw.is_s3:
        pytest.skip("the local store keeps no server-side encryption")
    store = stack.runtime.store
    document = stored_document(stack, tmp_path)
    data = raw.read(document.s3_key)
    as_stored = store.head(document.s3_key)
    # What an older writer, or a bucket without default encryption, leaves behind.
    raw.put(document.s3_key, data, encrypted=False, metadata=as_stored.metadata,
            content_type=as_stored.content_type)
    try:
        assert store.head(document.s3_key).sse is None
        repaired = findings(stack, run(stack, repairs=expand_repairs(["all"]),
                                       **{**QUIET, "deep": True}))
        after = store.head(document.s3_key, with_checksum=True)
        bytes_after = raw.read(document.s3_key)
        again = findings(stack, run(stack, **{**QUIET, "deep": True}))
        events = stack.events(document.id)
    finally:
        delete_document(stack, document)

    assert results_by_key(repaired)[document.s3_key] == ("unencrypted_object", "done")
    assert after.sse == stack.settings.sse
    assert (after.size, after.sha256) == (document.file_size, document.sha256)
    assert after.metadata == as_stored.metadata
    assert after.content_type == as_stored.content_type == "application/pdf"
    assert bytes_after == data
    assert [f for f in again if f["document_id"] == str(document.id)] == []
    assert "object_reencrypted" in events
