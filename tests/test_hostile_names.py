"""Hostile file names are handled, recorded cleanly, and never reach a key or a path."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.support.stack import Stack
from tests.test_watcher import RunningWatcher

NAMES = {
    "leading dash": b"-rf --no-preserve-root.pdf",
    "dots": b"report..final...pdf",
    "control characters": b"scan\x07\x1b[31mred\tand\nnewline.pdf",
    "255 bytes": b"A" * 251 + b".pdf",
    "not utf-8": b"\xff\xfeInvoice_\xe4\xf6\xfc.pdf",
    "right-to-left override": "invoice\u202efdp.exe".encode(),
}
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def write_named(folder: Path, raw_name: bytes) -> Path:
    path = os.fsencode(folder) + b"/" + raw_name
    with open(path, "wb") as out:
        out.write((CORPUS / "pdf" / "habibi.pdf").read_bytes() + f"\n% {uuid.uuid4()}".encode())
    return Path(os.fsdecode(path))


@pytest.mark.parametrize("kind", NAMES, ids=list(NAMES))
def test_hostile_names_through_the_inbox(stack: Stack, kind: str) -> None:
    inbox = stack.root / f"names-{uuid.uuid4().hex[:6]}"
    inbox.mkdir()
    write_named(inbox, NAMES[kind])

    with RunningWatcher(stack, inbox) as running:
        ids = running.wait_for_claims(1)

    document = stack.wait(ids)[ids[0]]
    assert document.status == "stored"
    assert not CONTROL.search(document.original_name)
    assert "/" not in document.original_name
    assert document.file_name == f"{document.id}.pdf"
    assert document.s3_key.endswith(f"documents/{document.id}.pdf")
    assert len(document.original_name) <= 255


def test_a_rejected_file_with_a_hostile_name_is_quarantined_under_a_safe_name(
        stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "-x\x1b..\x07.jpg"
    bad.write_bytes((CORPUS / "hostile" / "truncated.jpg").read_bytes())

    document_id = stack.ingest(bad)
    document = stack.wait([document_id])[document_id]

    assert document.error_code == "corrupt"
    (quarantined,) = [p for p in stack.settings.quarantine.glob(f"{document_id}-*")
                      if not p.name.endswith(".error.json")]
    assert not CONTROL.search(quarantined.name)
    assert quarantined.parent == stack.settings.quarantine
    assert quarantined.name.startswith(f"{document_id}-x")


LONG_NAMES = {
    "255 bytes": b"B" * 251 + b".pdf",
    "255 bytes of utf-8": ("Ünïcödé" * 20)[:125].encode() + b"\xc3\x9c.pdf",
    "cut utf-8 character": "日本語".encode() * 27 + "日".encode()[:2],
}


def corrupt_pdf() -> bytes:
    return (CORPUS / "hostile" / "truncated.pdf").read_bytes() + f"\n% {uuid.uuid4()}".encode()


def assert_quarantined_whole(stack: Stack, document_id: uuid.UUID, original_name: str) -> None:
    document = stack.wait([document_id])[document_id]
    assert (document.status, document.error_code) == ("failed", "corrupt")
    assert document.original_name == original_name
    kept = list(stack.settings.quarantine.glob(f"{document_id}-*"))
    (sidecar,) = [path for path in kept if path.name.endswith(".error.json")]
    (quarantined,) = [path for path in kept if path != sidecar]
    assert sidecar.name == quarantined.name + ".error.json"
    assert len(os.fsencode(sidecar.name)) <= 255
    assert quarantined.read_bytes()[:5] == b"%PDF-"
    record = json.loads(sidecar.read_text())
    assert record["original_name"] == original_name
    assert record["error"]["code"] == "corrupt"
    assert not list(stack.settings.quarantine.glob(".*.part"))


@pytest.mark.parametrize("kind", LONG_NAMES, ids=list(LONG_NAMES))
def test_a_rejected_file_with_a_long_name_is_quarantined_with_its_reason(
        stack: Stack, kind: str) -> None:
    raw = LONG_NAMES[kind]
    assert len(raw) <= 255
    inbox = stack.root / f"long-{uuid.uuid4().hex[:6]}"
    inbox.mkdir()
    with open(os.fsencode(inbox) + b"/" + raw, "wb") as out:
        out.write(corrupt_pdf())

    with RunningWatcher(stack, inbox) as running:
        ids = running.wait_for_claims(1)

    name = raw.decode("utf-8", errors="replace")
    assert_quarantined_whole(stack, ids[0], name)
    if kind == "255 bytes":
        (quarantined,) = [p for p in stack.settings.quarantine.glob(f"{ids[0]}-*")
                          if not p.name.endswith(".error.json")]
        assert quarantined.name.endswith("BBB.pdf")


def test_a_rejected_file_with_a_long_name_handed_over_by_sluice_ingest(
        stack: Stack, tmp_path: Path) -> None:
    name = "Ünïcödé-" * 20 + ".pdf"  # 244 bytes
    assert len(name.encode()) > 200
    path = tmp_path / name
    path.write_bytes(corrupt_pdf())

    assert_quarantined_whole(stack, stack.ingest(path), name)


def test_a_rejected_upload_with_a_long_name_is_quarantined_with_its_reason(
        stack: Stack) -> None:
    from tests.support.api_server import serve

    name = "Ünïcödé " * 30 + ".pdf"  # 484 bytes: longer than any file name on disk
    server = serve(stack)
    try:
        answer = server.upload(name, corrupt_pdf())
        assert answer.status_code == 202, answer.text
        final = server.wait_final(answer.json()["id"])
    finally:
        server.stop()

    assert final["error"]["code"] == "corrupt"
    assert final["original_name"] == name.strip()
    assert_quarantined_whole(stack, uuid.UUID(final["id"]), name.strip())


def test_a_utf8_name_cut_inside_its_last_character_is_found_by_its_words(stack: Stack) -> None:
    from tests.support.api_server import serve

    word = f"日本{uuid.uuid4().int % 10**6}"
    raw = f"{word} 東京 報告 ".encode() * 8 + "日".encode()[:2]
    inbox = stack.root / f"cut-{uuid.uuid4().hex[:6]}"
    inbox.mkdir()
    write_named(inbox, raw)

    with RunningWatcher(stack, inbox) as running:
        ids = running.wait_for_claims(1)
    document = stack.wait(ids)[ids[0]]

    assert document.status == "stored"
    assert document.original_name == f"{word} 東京 報告 " * 8 + "\ufffd"
    server = serve(stack)
    try:
        page = server.client.get("/api/documents/", params={"q": word}).json()
    finally:
        server.stop()
    assert [row["id"] for row in page["results"]] == [str(document.id)]
