"""Hostile file names are handled, recorded cleanly, and never reach a key or a path."""

from __future__ import annotations

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
