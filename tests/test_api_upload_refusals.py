"""Uploads Sluice refuses, and what each leaves behind: nothing."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.multipart import FORM_OVERHEAD_BYTES, MAX_FILES
from pipeline.db.models import Document
from pipeline.spool import INCOMING
from tests.support.api_server import AUTH, ApiServer, serve
from tests.support.documents import make_pdf, unique_word
from tests.support.stack import Stack

SMALL_LIMIT = 256 * 1024
BOUNDARY = "sluice-test-boundary"


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ApiServer]:
    server = serve(stack, max_file_size=SMALL_LIMIT)
    yield server
    server.stop()


class Kept:
    """What Sluice holds: document rows, spooled files and partial uploads."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.spool: Path = stack.settings.spool
        self.rows, self.files = self._count(), self._spooled()

    def _count(self) -> int:
        with self.stack.runtime.session() as session:
            return session.scalar(select(func.count()).select_from(Document))

    def _spooled(self) -> set[str]:
        return {path.name for path in self.spool.iterdir() if path.is_file()}

    def partials(self) -> list[Path]:
        return list((self.spool / INCOMING).glob("*.part"))

    def assert_nothing_new(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.partials() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.partials() == []
        assert self._count() == self.rows
        assert self._spooled() - self.files == set()


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None,
              close: bool = True) -> bytes:
    body = bytearray()
    for name, value in (fields or {}).items():
        body += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    for filename, content in files:
        body += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 ).encode()
        body += content + b"\r\n"
    if close:
        body += f"--{BOUNDARY}--\r\n".encode()
    return bytes(body)


def post_raw(api: ApiServer, body: bytes | Iterator[bytes], **headers: str):
    return api.client.post("/api/documents/upload/", content=body, headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers})


def test_upload_over_the_size_limit_gets_413_and_leaves_nothing(stack: Stack,
                                                                 api: ApiServer) -> None:
    kept = Kept(stack)
    too_big = os.urandom(SMALL_LIMIT + 1)

    answer = api.upload("big.bin", too_big)

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    kept.assert_nothing_new()


def test_request_declaring_too_large_a_body_is_refused_before_it_is_read(
        stack: Stack, api: ApiServer) -> None:
    kept = Kept(stack)
    # Larger than MAX_FILES files at the limit could be.
    body = multipart([("big.bin", os.urandom(MAX_FILES * SMALL_LIMIT + FORM_OVERHEAD_BYTES))])

    answer = post_raw(api, body)

    assert answer.status_code == 413
    kept.assert_nothing_new()


def test_streamed_upload_over_the_limit_is_stopped_midway(stack: Stack,
                                                          api: ApiServer) -> None:
    kept = Kept(stack)
    body = multipart([("big.pdf", os.urandom(SMALL_LIMIT * 2))])

    # Chunked, with no Content-Length: only counting the bytes can catch it.
    answer = post_raw(api, (body[i:i + 65536] for i in range(0, len(body), 65536)))

    assert answer.status_code == 413
    kept.assert_nothing_new()


def test_cut_off_upload_leaves_nothing(stack: Stack, api: ApiServer) -> None:
    kept = Kept(stack)
    body = multipart([("scan.pdf", make_pdf("x") + os.urandom(SMALL_LIMIT - 10_000))])
    head = (f"POST /api/documents/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()

    with socket.create_connection(("127.0.0.1", api.port)) as client:
        client.sendall(head + body[: len(body) * 3 // 4])
        # The file is being written to the spool while the body arrives.
        deadline = time.monotonic() + 10
        while not kept.partials() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kept.partials(), "the upload is streamed into the spool as it arrives"

    kept.assert_nothing_new()


def test_body_without_its_closing_boundary_gets_400_and_leaves_nothing(
        stack: Stack, api: ApiServer) -> None:
    kept = Kept(stack)

    answer = post_raw(api, multipart([("a.txt", b"hello")], close=False))

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed_upload"
    kept.assert_nothing_new()


def test_declared_sha256_mismatch_is_refused_and_nothing_kept(stack: Stack,
                                                               api: ApiServer) -> None:
    kept = Kept(stack)
    content = f"prescription {unique_word()}".encode()

    answer = api.client.post("/api/documents/upload/", files={"file": ("rx.txt", content)},
                             headers={"X-Content-SHA256": "0" * 64})

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "checksum_mismatch"
    kept.assert_nothing_new()

    right = hashlib.sha256(content).hexdigest()
    accepted = api.upload("rx.txt", content, sha256=right)
    assert accepted.status_code == 202
    assert accepted.json()["sha256"] == right


def test_several_files_in_one_request_are_all_received(api: ApiServer) -> None:
    files = [("file", (f"page-{n}.txt", f"{unique_word()} {n}".encode())) for n in range(3)]

    answer = api.client.post("/api/documents/upload/", files=files,
                             data={"category": "invoice"})

    assert answer.status_code == 202
    batch = answer.json()
    assert batch["count"] == 3
    assert [d["original_name"] for d in batch["documents"]] == [f[1][0] for f in files]
    for document in batch["documents"]:
        assert api.wait_final(document["id"])["status"] == "stored"


def test_the_limit_is_per_file_so_several_files_may_add_up_to_more(
        api: ApiServer) -> None:
    size = SMALL_LIMIT - 1024
    count = (SMALL_LIMIT + FORM_OVERHEAD_BYTES) // size + 1
    files = [("file", (f"part-{n}.txt", f"{unique_word()}\n".encode().ljust(size, b"a")))
             for n in range(count)]
    assert all(len(f[1][1]) <= SMALL_LIMIT for f in files)
    assert sum(len(f[1][1]) for f in files) > SMALL_LIMIT + FORM_OVERHEAD_BYTES

    answer = api.client.post("/api/documents/upload/", files=files)

    assert answer.status_code == 202, answer.text
    assert answer.json()["count"] == count


def test_one_bad_file_refuses_the_whole_request(stack: Stack, api: ApiServer) -> None:
    kept = Kept(stack)
    files = [("file", ("good.txt", unique_word().encode())),
             ("file", ("tool.bin", b"\x7fELF\x02\x01\x01" + os.urandom(4000)))]

    answer = api.client.post("/api/documents/upload/", files=files)

    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_type"
    kept.assert_nothing_new()


@pytest.mark.parametrize(("fields", "files", "status", "code"), [
    ({"category": "poetry"}, [("a.txt", b"a")], 422, "invalid_category"),
    ({"tags": "not json"}, [("a.txt", b"a")], 422, "invalid_tags"),
    ({"tags": '{"a": 1}'}, [("a.txt", b"a")], 422, "invalid_tags"),
    ({"content_type_id": "ten"}, [("a.txt", b"a")], 422, "invalid_field"),
    ({"uploaded_by": "x" * 300}, [("a.txt", b"a")], 422, "invalid_field"),
    ({"sha256": "abc"}, [("a.txt", b"a")], 422, "invalid_sha256"),
    ({"category": "medical"}, [], 422, "missing_file"),
    ({}, [("empty.txt", b"")], 422, "empty_file"),
], ids=["category", "tags-text", "tags-object", "content-type-id", "long-uploader",
        "sha256-format", "no-file", "empty-file"])
def test_invalid_fields_are_refused_and_nothing_kept(stack: Stack, api: ApiServer,
                                                     fields: dict, files: list,
                                                     status: int, code: str) -> None:
    kept = Kept(stack)

    answer = post_raw(api, multipart(files, fields))

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    kept.assert_nothing_new()


def test_a_body_that_is_not_multipart_gets_415(api: ApiServer) -> None:
    answer = api.client.post("/api/documents/upload/", json={"file": "x"})

    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_media_type"


def test_a_description_over_64_kb_is_an_invalid_field(stack: Stack, api: ApiServer) -> None:
    kept = Kept(stack)

    answer = api.upload("a.txt", unique_word().encode(), description="d" * (64 * 1024 + 1))

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "field_too_large"
    assert "description" in answer.json()["error"]["message"]
    kept.assert_nothing_new()


def test_damaged_containers_are_accepted_and_quarantined_like_any_damaged_file(
        stack: Stack, api: ApiServer) -> None:
    from tests.conftest import CORPUS

    truncated_docx = (CORPUS / "office" / "testWORD_truncated.docx").read_bytes()
    corrupt_zip = (CORPUS / "archive" / "testZIP_corrupted_oom.zip").read_bytes()
    corrupt_pdf = (CORPUS / "hostile" / "truncated.pdf").read_bytes()
    files = [("file", ("good.txt", unique_word().encode())),
             ("file", ("letter.docx", truncated_docx)),
             ("file", ("old.zip", corrupt_zip)),
             ("file", ("scan.pdf", corrupt_pdf + unique_word().encode()))]

    answer = api.client.post("/api/documents/upload/", files=files)

    assert answer.status_code == 202, answer.text
    sent = answer.json()["documents"]
    final = [api.wait_final(document["id"]) for document in sent]
    assert [d["status"] for d in final] == ["stored", "failed", "failed", "failed"]
    for document, (_, (_, content)) in zip(final[1:], files[1:], strict=True):
        assert document["error"]["code"] == "corrupt"
        assert document["file_size"] == len(content)
        assert document["sha256"] == hashlib.sha256(content).hexdigest()
        assert document["mime_type"]
        quarantined = stack.settings.quarantine / f"{document['id']}-{document['original_name']}"
        assert quarantined.read_bytes() == content
        assert quarantined.with_name(quarantined.name + ".error.json").exists()


def test_a_name_sent_as_filename_star_is_kept(api: ApiServer) -> None:
    # As urllib3 before 2.0 sent any non-ASCII name; with both, RFC 6266 prefers it.
    parts = [
        "filename*=utf-8''Befund_M%C3%BCller.txt",
        "filename=\"Befund_Mueller.txt\"; filename*=UTF-8'de'%E6%96%87%E4%BB%B6.txt",
    ]
    body = bytearray()
    for number, disposition in enumerate(parts):
        body += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"{disposition}\r\nContent-Type: text/plain\r\n\r\n"
                 f"{unique_word()} {number}\r\n").encode()
    body += f"--{BOUNDARY}--\r\n".encode()

    answer = post_raw(api, bytes(body))

    assert answer.status_code == 202, answer.text
    names = [document["original_name"] for document in answer.json()["documents"]]
    assert names == ["Befund_Müller.txt", "文件.txt"]
