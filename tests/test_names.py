"""Names: decoded as well as can be, and cut to fit a disk's 255 bytes."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from pipeline.db.models import Document
from pipeline.names import (
    NAME_MAX_BYTES,
    clean_name,
    decode_name,
    decode_name_bytes,
    fit_name,
    safe_file_name,
)
from pipeline.quarantine import quarantine, quarantine_name
from pipeline.spool import FolderSpool


@pytest.mark.parametrize("name", [
    "B" * 251 + ".pdf",
    "Ünïcödé" * 40 + ".pdf",
    "日本語" * 90 + ".tiff",
    "x" * 300,
    "a." + "e" * 300,
])
@pytest.mark.parametrize("limit", [200, 207, 100])
def test_fit_name_cuts_on_a_character_and_keeps_the_extension(name: str, limit: int) -> None:
    fitted = fit_name(name, limit)

    assert len(fitted.encode("utf-8")) <= limit
    assert len(fitted.encode("utf-8")) > limit - 4  # nothing more cut than needed
    stem, extension = os.path.splitext(name)
    if len(extension) <= 16:
        assert fitted.endswith(extension)
    assert name.startswith(fitted.removesuffix(extension)[:-1])


def test_a_short_name_is_left_alone() -> None:
    assert fit_name("Befund Müller.pdf", 200) == "Befund Müller.pdf"
    assert safe_file_name("-rf ../x.pdf") == "x.pdf"


def test_quarantine_names_fit_in_255_bytes_with_their_error_json() -> None:
    for name in ("B" * 251 + ".pdf", "Ü" * 127 + ".pdf", "日本語" * 85):
        document = Document(id=uuid.uuid4(), original_name=name)
        quarantined = quarantine_name(document)
        assert len((quarantined + ".error.json").encode()) <= NAME_MAX_BYTES
        assert quarantined.startswith(f"{document.id}-")


def test_a_name_cut_inside_its_last_character_is_read_as_utf8() -> None:
    raw = "日本語".encode() * 27 + "日".encode()[:2]

    decoded = decode_name(os.fsdecode(raw))

    assert decoded == "日本語" * 27 + "\ufffd"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"Befund_M\xfcller.pdf", "Befund_Müller.pdf"),
    (b"caf\xe9", "café"),
    (b"Gr\xf6\xdfe.txt", "Größe.txt"),
    ("Überweisung März.pdf".encode(), "Überweisung März.pdf"),
    ("Ünïcödé".encode() + b"\xff.pdf", "Ünïcödé\ufffd.pdf"),
    # One accidental UTF-8 pair among other Latin-1 letters stays Latin-1.
    (b"M\xfcller_\xc3\xa9", "Müller_Ã©"),
])
def test_legacy_names_still_read_in_their_encoding(raw: bytes, expected: str) -> None:
    assert decode_name_bytes(raw) == expected


def _spooled(tmp_path: Path, name: str) -> tuple[FolderSpool, Document]:
    spool = FolderSpool(tmp_path / "spool")
    document_id = uuid.uuid4()
    ref = spool.receive(document_id, [b"%PDF-1.4 broken"], 1024).ref
    return spool, Document(id=document_id, original_name=name, spool_ref=ref,
                           source="cli", source_path=None)


def test_quarantine_of_a_long_name_writes_both_files(tmp_path: Path) -> None:
    name = "Ünïcödé" * 18 + ".pdf"
    spool, document = _spooled(tmp_path, name)

    where = quarantine(spool, document, tmp_path / "q", "corrupt", "broken", {"file_size": 15})

    assert where is not None and Path(where).exists()
    sidecar = Path(where + ".error.json")
    assert json.loads(sidecar.read_text())["original_name"] == name
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        Path(where).name, sidecar.name]


def test_a_quarantine_that_fails_never_raises_and_keeps_the_file(tmp_path: Path) -> None:
    spool, document = _spooled(tmp_path, "scan.pdf")
    not_a_folder = tmp_path / "q"
    not_a_folder.write_text("a file where the quarantine folder should be")

    where = quarantine(spool, document, not_a_folder, "corrupt", "broken", {})

    assert where is None
    assert spool.exists(document.spool_ref), "a file that cannot be moved stays in the spool"


def test_a_sidecar_that_cannot_be_written_still_keeps_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool, document = _spooled(tmp_path, "scan.pdf")

    def refuse(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", refuse)
    where = quarantine(spool, document, tmp_path / "q", "corrupt", "broken", {})

    assert where is not None and Path(where).exists()
    assert [p.name for p in (tmp_path / "q").iterdir()] == [Path(where).name]


def test_archive_and_upload_names_cut_inside_a_character_are_read_as_utf8() -> None:
    from api.multipart import _decode
    from pipeline.migration.legacy_names import decode_tar_name

    raw = "日本語".encode() * 27 + "日".encode()[:2]

    assert decode_tar_name(os.fsdecode(raw)) == "日本語" * 27 + "\ufffd"
    assert _decode(raw) == "日本語" * 27 + "\ufffd"
    assert _decode(b"M\xfcller.pdf") == "Müller.pdf"


def test_a_name_too_long_for_the_record_keeps_its_extension() -> None:
    name = "H" + "L" * 1000 + ".pdf"

    cleaned = clean_name(name)

    assert len(cleaned) <= 255
    assert cleaned.endswith(".pdf")
    assert cleaned.startswith("HLLL")
