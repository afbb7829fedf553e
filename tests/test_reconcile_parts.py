"""What a reconciliation's correctness rests on: key order, listing, sampling, names."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from pathlib import Path

import boto3
import pytest

from pipeline.reconcile import s3_listing
from pipeline.reconcile.keyspace import Section, is_ignored_key, named_document
from pipeline.reconcile.listing import iter_pages
from pipeline.reconcile.sampling import Reservoir
from pipeline.storage.local import LocalStore
from tests.conftest import make_bucket
from tests.support.services import MotoServer

AWKWARD_NAMES = ["a b.pdf", "a+b.pdf", "a-b", "a.b", "a/b", "a/c/d", "ab", "x&y<z>.pdf",
                 "%41.pdf", "ünïcödé.pdf", "emoji-😀.pdf", "Z.pdf", "~tilde", "a b/c"]


def utf8_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode())


@pytest.fixture(scope="module")
def awkward_bucket(moto_server: MotoServer) -> tuple[object, str]:
    name = f"reconcile-parts-{uuid.uuid4().hex[:8]}"
    make_bucket(moto_server.url, name)
    client = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    for index, key in enumerate(AWKWARD_NAMES):
        client.put_object(Bucket=name, Key=f"documents/{key}", Body=b"x" * index)
    client.put_object(Bucket=name, Key="elsewhere/a.pdf", Body=b"x")
    return client, name


def test_s3_pages_list_what_botocore_lists_in_byte_order(awkward_bucket: tuple) -> None:
    client, bucket = awkward_bucket
    pages = s3_listing.iter_pages(client, bucket, "documents/", page_keys=3)
    ours = [obj for page in pages for obj in page]
    theirs = [(item["Key"], item["Size"])
              for page in client.get_paginator("list_objects_v2")
              .paginate(Bucket=bucket, Prefix="documents/")
              for item in page["Contents"]]

    assert [(key, size) for key, size, _ in ours] == theirs
    assert [key for key, _, _ in ours] == utf8_order(
        [f"documents/{name}" for name in AWKWARD_NAMES])
    assert all(modified.endswith("Z") for _, _, modified in ours)


def test_raw_page_hook_leaves_everyone_elses_listings_alone(
        awkward_bucket: tuple) -> None:
    client, bucket = awkward_bucket
    list(s3_listing.iter_pages(client, bucket, "documents/"))

    plain = client.list_objects_v2(Bucket=bucket, Prefix="documents/")

    assert len(plain["Contents"]) == len(AWKWARD_NAMES)


def test_local_store_lists_in_the_buckets_byte_order(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    for key in AWKWARD_NAMES:
        store.put_bytes(f"documents/{key}", b"data",
                        sha256=hashlib.sha256(b"data").hexdigest(),
                        content_type="application/octet-stream", metadata={})
    (tmp_path / "objects" / "documents" / ".half.123.part").write_bytes(b"partial")

    listed = [obj for page in iter_pages(store, "documents/") for obj in page]

    assert [key for key, _, _ in listed] == utf8_order(
        [f"documents/{name}" for name in AWKWARD_NAMES])
    assert {size for _, size, _ in listed} == {4}


def test_reservoir_keeps_exactly_its_size_and_favours_no_position() -> None:
    positions: Counter[int] = Counter()
    for seed in range(3000):
        sample = Reservoir[int](5, seed)
        for item in range(50):
            sample.offer(lambda item=item: item)
        assert len(set(sample.items)) == 5
        positions.update(item // 10 for item in sample.items)

    # 15,000 picks over five bands of ten items: ~3,000 each.
    assert all(2700 < count < 3300 for count in positions.values()), positions


def test_reservoir_builds_only_the_items_it_keeps() -> None:
    built = []
    sample = Reservoir[int](10, seed=7)
    for item in range(100_000):
        sample.offer(lambda item=item: built.append(item) or item)

    assert len(sample.items) == 10
    assert len(built) < 200


@pytest.mark.parametrize("name, ignored", [
    (".DS_Store", True), ("sub/.DS_Store", True), ("Thumbs.db", True),
    ("@eaDir/x.jpg", True), ("", True), ("folder/", True), ("._resource", True),
    (f"{uuid.UUID(int=1)}.pdf", False), ("stray.pdf", False), ("sub/stray.pdf", False),
])
def test_names_left_by_file_browsers_are_never_findings(name: str,
                                                        ignored: bool) -> None:
    section = Section("p/documents/", "original")

    assert is_ignored_key(f"p/documents/{name}", section) is ignored


def test_keys_are_traced_to_the_document_they_are_named_after() -> None:
    section = Section("documents/", "original")
    document_id = uuid.uuid4()

    assert named_document(f"documents/{document_id}.pdf", section) == document_id
    assert named_document(f"documents/{document_id}", section) == document_id
    assert named_document(f"documents/{str(document_id).upper()}.pdf", section) is None
    assert named_document("documents/invoice.pdf", section) is None


def test_incomplete_or_error_pages_are_left_to_botocores_retry(
        awkward_bucket: tuple) -> None:
    from botocore import handlers

    client, _ = awkward_bucket
    model = client.meta.service_model.operation_model("ListObjectsV2")
    truncated = {"status_code": 200, "headers": {},
                 "body": b'<?xml version="1.0"?><ListBucketResult><Contents><Key>a'}
    error = {"status_code": 200, "headers": {},
             "body": b'<?xml version="1.0"?><Error><Code>InternalError</Code></Error>'}
    complete = {"status_code": 200, "headers": {},
                "body": b'<?xml version="1.0"?><ListBucketResult></ListBucketResult>\n'}
    s3_listing._capture.pages = []
    try:
        for answer in (truncated, error, complete):
            s3_listing._take_raw_page(handlers._handle_200_error, model, answer)
        kept = s3_listing._capture.pages
    finally:
        s3_listing._capture.pages = None

    assert truncated["status_code"] == error["status_code"] == 500, "botocore retries"
    assert kept == [b'<?xml version="1.0"?><ListBucketResult></ListBucketResult>\n']
    assert complete["body"] == s3_listing.EMPTY_PAGE
