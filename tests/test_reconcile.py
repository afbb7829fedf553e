"""Reconciliation finds every real difference between table and bucket, and no other.

Each difference is made to happen for real, behind Sluice's back, on the
embedded store and on PostgreSQL + moto S3; afterwards the store is put back
as it was, so that the next test starts from a clean store again.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from pipeline import documents
from pipeline.db.models import Document
from pipeline.documents import Actor
from pipeline.reconcile import RunOptions, reconcile
from tests.conftest import CORPUS
from tests.reconcile_helpers import (
    about,
    delete_document,
    findings,
    run,
    soft_delete_row,
    stored_document,
)
from tests.support.raw_bucket import RawBucket
from tests.support.stack import Stack

CLEAN = {"stuck_after_seconds": 24 * 3600}
MANIFEST_ENTRIES = json.loads((CORPUS / "manifest.json").read_text())


@pytest.fixture(scope="module")
def corpus_store(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The whole corpus ingested, one file twice (a duplicate), one deleted properly."""
    ids = [stack.ingest(CORPUS / entry["path"]) for entry in MANIFEST_ENTRIES]
    ids.append(stack.ingest(CORPUS / "pdf" / "testPDF.pdf"))
    final = stack.wait(ids, timeout=300)
    assert any(d.status == "duplicate" for d in final.values())

    deleted = stored_document(stack, tmp_path_factory.mktemp("deleted"))
    delete_document(stack, deleted)
    return stack


@pytest.fixture
def raw(stack: Stack) -> RawBucket:
    return RawBucket(stack.runtime.store)


def live_objects(stack: Stack) -> tuple[int, int]:
    """Objects live documents name: (named after their own id, named after another).

    A document that took over a deleted original's content (``pipeline.removal``)
    names objects called after that original; the merge checks those one by one.
    """
    prefix = stack.settings.storage.prefix
    with stack.runtime.session() as session:
        rows = session.execute(
            select(Document.id, Document.s3_key, Document.thumbnail_key)
            .where(Document.status == "stored", Document.is_active.is_(True))).all()
    own = other = 0
    for document_id, *keys in rows:
        for key, section in zip(keys, ("documents/", "thumbnails/"), strict=True):
            if key is not None and key.startswith(f"{prefix}{section}{document_id}"):
                own += 1
            elif key is not None:
                other += 1
    return own, other


def test_clean_store_of_whole_corpus_has_no_findings(corpus_store: Stack) -> None:
    stack = corpus_store

    result = run(stack, deep=True, orphan_grace_seconds=0, **CLEAN)

    assert findings(stack, result) == []
    assert result.findings_total == 0
    stats = result.stats
    own, other = live_objects(stack)
    assert stats["objects_matched"] == own
    assert stats["keys_out_of_layout"] >= other
    assert stats["objects_inspected"] == stats["objects_matched"]
    assert stats["inspection_errors"] == 0
    assert "mismatch" not in stats["checksums"]
    assert stats["checksums"].get("verified", 0) > 0
    if RawBucket(stack.runtime.store).is_s3:
        assert stats["encryption_checked"] is True
    else:
        assert "encryption was not checked" in stats["encryption_note"]


def test_object_deleted_behind_sluices_back_is_missing(stack: Stack, raw: RawBucket,
                                                       tmp_path: Path) -> None:
    document = stored_document(stack, tmp_path)
    kept = {key: raw.read(key) for key in (document.s3_key, document.thumbnail_key)}
    for key in kept:
        raw.delete(key)
    try:
        found = findings(stack, run(stack, sample_size=0, **CLEAN))
    finally:
        for key, data in kept.items():
            raw.restore(key, data, document.id)

    assert about(found, document.id) == {
        ("missing_object", "original", document.s3_key),
        ("missing_object", "thumbnail", document.thumbnail_key),
    }
    again = findings(stack, run(stack, sample_size=0, **CLEAN))
    assert about(again, document.id) == set()


def test_stray_objects_become_orphans_after_the_grace_period(stack: Stack,
                                                             raw: RawBucket) -> None:
    prefix = stack.settings.storage.prefix
    strays = {f"{prefix}documents/{uuid.uuid4()}.pdf",
              f"{prefix}thumbnails/{uuid.uuid4()}.jpg",
              f"{prefix}documents/not-a-document.bin"}
    never = {f"{prefix}documents/.DS_Store", f"{prefix}thumbnails/@eaDir/x.jpg",
             f"{prefix}documents/sub/.DS_Store", f"{prefix}documents/Thumbs.db",
             f"{prefix}stray.pdf", f"{prefix}other/x.pdf",
             f"{prefix}documents-old/x.pdf", f"{prefix}reports/old.json"}
    if raw.is_s3:
        never.add(f"{prefix}documents/")  # a console's "folder"
    for key in strays | never:
        raw.put(key, b"not Sluice's")
    try:
        young = findings(stack, run(stack, sample_size=0, **CLEAN))
        judged = findings(stack, run(stack, sample_size=0, orphan_grace_seconds=0,
                                     **CLEAN))
    finally:
        for key in strays | never:
            raw.delete(key)

    assert about(young, keys=strays | never) == set()
    assert about(judged, keys=strays | never) == {
        ("orphan_object", "thumbnail" if "/thumbnails/" in f"/{key}" else "original",
         key) for key in strays}
    named = [f for f in judged if f["key"] in strays and f["key"].endswith(".pdf")]
    assert named[0]["document_id"] is None
    assert named[0]["detail"]["named_for"] in named[0]["key"]


def test_truncated_object_is_a_size_mismatch(stack: Stack, raw: RawBucket,
                                             tmp_path: Path) -> None:
    document = stored_document(stack, tmp_path)
    data = raw.read(document.s3_key)
    raw.put(document.s3_key, data[: len(data) // 2])
    try:
        found = findings(stack, run(stack, sample_size=0, **CLEAN))
    finally:
        raw.restore(document.s3_key, data, document.id, "application/pdf")

    mine = [f for f in found if f["document_id"] == str(document.id)]
    assert [(f["kind"], f["key"]) for f in mine] == [("size_mismatch", document.s3_key)]
    assert mine[0]["detail"] == {"expected_size": len(data), "size": len(data) // 2}


def test_replaced_object_is_a_checksum_mismatch_when_inspected(
        stack: Stack, raw: RawBucket, tmp_path: Path) -> None:
    document = stored_document(stack, tmp_path)
    data = raw.read(document.s3_key)
    raw.put(document.s3_key, bytes(reversed(data)))  # same size, other bytes
    try:
        listed_only = findings(stack, run(stack, sample_size=0, **CLEAN))
        deep = findings(stack, run(stack, deep=True, **CLEAN))
        sampled = run(stack, sample_size=1_000_000, **CLEAN)
    finally:
        raw.restore(document.s3_key, data, document.id, "application/pdf")

    assert about(listed_only, document.id) == set()
    assert about(deep, document.id) == {
        ("checksum_mismatch", "original", document.s3_key)}
    mismatch = next(f for f in deep if f["document_id"] == str(document.id))
    assert mismatch["detail"]["expected_sha256"] == document.sha256
    assert mismatch["detail"]["evidence"] == "store"
    assert about(findings(stack, sampled), document.id) == {
        ("checksum_mismatch", "original", document.s3_key)}
    assert sampled.stats["mode"] == "sample"
    assert sampled.stats["sample_size"] == 1_000_000
    assert sampled.stats["objects_inspected"] == sampled.stats["objects_matched"]


def test_object_written_without_encryption_is_found(stack: Stack, raw: RawBucket,
                                                    tmp_path: Path) -> None:
    document = stored_document(stack, tmp_path)
    if not raw.is_s3:
        result = run(stack, deep=True, **CLEAN)
        assert about(findings(stack, result), document.id) == set()
        assert result.stats["encryption_checked"] is False
        assert "local object store" in result.stats["encryption_note"]
        return

    data = raw.read(document.s3_key)
    raw.put(document.s3_key, data, encrypted=False)
    try:
        found = findings(stack, run(stack, deep=True, **CLEAN))
    finally:
        raw.restore(document.s3_key, data, document.id, "application/pdf")

    assert about(found, document.id) == {
        ("unencrypted_object", "original", document.s3_key)}
    finding = next(f for f in found if f["document_id"] == str(document.id))
    assert finding["detail"]["problem"] == "no server-side encryption"


def test_objects_not_under_the_expected_kms_key_are_found(stack: Stack,
                                                          tmp_path: Path) -> None:
    if not RawBucket(stack.runtime.store).is_s3:
        pytest.skip("the local store keeps no server-side encryption")
    document = stored_document(stack, tmp_path)
    from pipeline.runtime import Runtime

    kms = stack.settings.model_copy(update={"sse": "aws:kms", "sse_kms_key_id": "k-1"})
    runtime = Runtime(kms)
    try:
        options = RunOptions.from_settings(kms, trigger="test", deep=True, **CLEAN)
        result = reconcile(runtime, options)
    finally:
        runtime.close()

    found = findings(stack, result)
    expected = ("unencrypted_object", "original", document.s3_key)
    assert expected in about(found, document.id)
    problem = next(f for f in found if f["key"] == document.s3_key)["detail"]["problem"]
    assert problem == "encrypted with AES256, not with the KMS key"


def test_documents_waiting_too_long_are_stuck(stack: Stack, tmp_path: Path) -> None:
    from tests.reconcile_helpers import unique_pdf

    waiting = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    abandoned = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    working = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    with stack.runtime.session() as session:
        # A worker killed mid-way (its message lost too) leaves its lease to expire.
        documents.claim(session, abandoned, Actor("dead-host:1", "dead-task"), 1)
        documents.claim(session, working, Actor("live-host:1", "live-task"), 600)
    time.sleep(1.5)
    try:
        found = findings(stack, run(stack, sample_size=0, stuck_after_seconds=1))
    finally:
        with stack.runtime.session() as session:
            session.execute(update(Document).where(Document.id == working)
                            .values(lease_until=documents.stale_since(1)))
            session.commit()
        for document_id in (waiting, abandoned, working):
            from workers.celery_app import enqueue_ingest

            enqueue_ingest(stack.app, document_id)
        stack.wait([waiting, abandoned, working])

    stuck = {f["document_id"]: f["detail"] for f in found if f["kind"] == "stuck"}
    assert stuck[str(waiting)]["status"] == "received"
    assert stuck[str(abandoned)]["status"] == "processing"
    assert stuck[str(abandoned)]["spooled"] is True
    assert str(working) not in stuck, "a live lease is slow work, not stuck work"


def test_soft_deleted_row_whose_objects_remain_is_deleted_but_present(
        stack: Stack, tmp_path: Path) -> None:
    document = stored_document(stack, tmp_path)
    soft_delete_row(stack, document.id)
    try:
        found = findings(stack, run(stack, sample_size=0, orphan_grace_seconds=0,
                                    **CLEAN))
    finally:
        delete_document(stack, document)

    assert about(found, document.id) == {
        ("deleted_but_present", "original", document.s3_key),
        ("deleted_but_present", "thumbnail", document.thumbnail_key),
    }
    after = findings(stack, run(stack, sample_size=0, orphan_grace_seconds=0, **CLEAN))
    assert about(after, document.id) == set()


def test_upload_in_flight_is_no_orphan_but_a_failed_ones_leftover_is(
        stack: Stack, raw: RawBucket, tmp_path: Path) -> None:
    from tests.reconcile_helpers import unique_pdf

    document_id = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    key = f"{stack.settings.storage.prefix}documents/{document_id}.pdf"
    raw.put(key, b"%PDF-1.4 half of an upload")
    try:
        in_flight = findings(stack, run(stack, sample_size=0, orphan_grace_seconds=0,
                                        **CLEAN))
        with stack.runtime.session() as session:
            session.execute(update(Document).where(Document.id == document_id)
                            .values(status="failed", error_code="corrupt",
                                    spool_ref=None))
            session.commit()
        failed = findings(stack, run(stack, sample_size=0, orphan_grace_seconds=0,
                                     **CLEAN))
    finally:
        raw.delete(key)

    assert about(in_flight, document_id) == set()
    assert about(failed, document_id) == {("orphan_object", "original", key)}
    leftover = next(f for f in failed if f["key"] == key)
    assert leftover["detail"]["document_status"] == "failed"
