"""Every corpus file, handed to a running Sluice, ends as its manifest says."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from PIL import Image

from tests.conftest import CORPUS
from tests.expectations import normalize, outcome
from tests.support.stack import Stack

ENTRIES = json.loads((CORPUS / "manifest.json").read_text())
THUMBNAILED = ("application/pdf", "image/")


@pytest.fixture(scope="session")
def ingested(stack: Stack) -> dict[str, uuid.UUID]:
    """The whole corpus, ingested once per backend: manifest path -> document id."""
    ids = {entry["path"]: stack.ingest(CORPUS / entry["path"]) for entry in ENTRIES}
    stack.wait(ids.values(), timeout=240)
    return ids


def read_object(stack: Stack, key: str) -> bytes:
    store = stack.runtime.store
    if hasattr(store, "open"):
        with store.open(key) as handle:
            return handle.read()
    return store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["path"] for e in ENTRIES])
def test_corpus_file_ends_as_manifest_says(stack: Stack, ingested: dict, entry: dict) -> None:
    document = stack.document(ingested[entry["path"]])
    expected, codes = outcome(entry)

    if expected == "final":
        assert document.status in ("stored", "failed", "duplicate")
    elif expected == "failed":
        assert document.status == "failed", document.error_message
        assert document.error_code in codes
        assert document.s3_key is None
        quarantined = list(stack.settings.quarantine.glob(f"{document.id}-*.error.json"))
        assert quarantined, "a rejected file is kept in quarantine with its reason"
        assert json.loads(quarantined[0].read_text())["error"]["code"] == document.error_code
        # What was learned before the refusal is kept.
        assert (document.file_size, document.sha256) == (entry["size"], entry["sha256"])
        if entry["path"].endswith((".docx", ".zip")) and document.error_code == "corrupt":
            assert document.mime_type == "application/zip"
    else:
        assert document.status in ("stored", "duplicate"), document.error_message
        if entry["mime"] != "application/octet-stream":
            assert document.mime_type == entry["mime"]


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if outcome(e)[0] == "stored" and "pages" in e
              and e["mime"] == "application/pdf"],
    ids=lambda e: e["path"],
)
def test_pdf_facts_and_text_match_manifest(stack: Stack, ingested: dict, entry: dict) -> None:
    document = stack.document(ingested[entry["path"]])
    if document.status == "duplicate":
        document = stack.document(document.duplicate_of)
    text = normalize(stack.text(document.id) or "")

    assert document.encrypted == entry["encrypted"]
    if "passwords" in entry and entry["passwords"].get("user"):
        # Without the user password nothing inside can be read.
        assert document.page_count is None and document.thumbnail_key is None
        assert document.text_length is None
        return
    assert document.page_count == entry["pages"]
    for snippet in entry.get("text_contains", []):
        assert normalize(snippet) in text
    for snippet in entry.get("text_not_contains", []):
        assert normalize(snippet) not in text
    if entry.get("text_empty"):
        assert not text.strip()
    assert document.text_length == len(stack.text(document.id))


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if outcome(e)[0] == "stored" and "display_width" in e],
    ids=lambda e: e["path"],
)
def test_image_thumbnail_is_upright_and_small(stack: Stack, ingested: dict, entry: dict) -> None:
    document = stack.document(ingested[entry["path"]])
    if document.status == "duplicate":
        document = stack.document(document.duplicate_of)
    assert document.thumbnail_key, "every image Pillow reads gets a thumbnail"

    thumbnail = Image.open(io.BytesIO(read_object(stack, document.thumbnail_key)))
    width, height = thumbnail.size
    assert max(width, height) <= 400
    expected_ratio = entry["display_width"] / entry["display_height"]
    assert abs(width / height - expected_ratio) < 0.05 * max(expected_ratio, 1)
    if "pages" in entry:
        assert document.page_count == entry["pages"]
    elif entry.get("frames", 1) > 1:
        assert document.page_count == entry["frames"]
    else:
        assert document.page_count is None


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e["path"].startswith("text/")], ids=lambda e: e["path"],
)
def test_text_files_are_searchable(stack: Stack, ingested: dict, entry: dict) -> None:
    document = stack.document(ingested[entry["path"]])
    text = normalize(stack.text(document.id) or "")
    for snippet in entry.get("text_contains", []):
        if "<" not in snippet:  # HTML is stored as its visible text
            assert normalize(snippet) in text


def test_every_stored_original_is_in_the_store_with_its_checksum(
        stack: Stack, ingested: dict) -> None:
    documents = stack.documents(ingested.values())
    stored = [d for d in documents.values() if d.status == "stored"]
    assert stored
    for document in stored:
        info = stack.runtime.store.head(document.s3_key, with_checksum=True)
        assert info is not None and info.size == document.file_size
        assert info.sha256 == document.sha256
        if stack.runtime.store.encrypts:
            assert info.sse == stack.settings.sse
        if document.thumbnail_key:
            thumb = stack.runtime.store.head(document.thumbnail_key, with_checksum=True)
            assert thumb is not None
            if stack.runtime.store.encrypts:
                assert thumb.sse == stack.settings.sse


def test_pdf_and_images_get_thumbnails_others_do_not(stack: Stack, ingested: dict) -> None:
    for entry in ENTRIES:
        document = stack.document(ingested[entry["path"]])
        if document.status != "stored" or document.encrypted:
            continue
        has_thumbnail = document.thumbnail_key is not None
        assert has_thumbnail == document.mime_type.startswith(THUMBNAILED), entry["path"]


def test_content_type_decides_not_the_name(stack: Stack, ingested: dict) -> None:
    html_named_pdf = stack.document(ingested["hostile/Rechnung_2019-04.pdf"])
    assert html_named_pdf.mime_type == "text/html"
    assert html_named_pdf.thumbnail_key is None
    assert "type_mismatch" in stack.events(html_named_pdf.id)


def test_worker_memory_stays_under_its_caps_on_the_whole_corpus(
        stack: Stack, ingested: dict) -> None:
    """The hostile files included: every worker process and reader stays bounded."""
    from tests.support.stack import command_line, peak_rss_mb, process_tree

    peaks = {pid: peak_rss_mb(pid) for pid in process_tree(stack.worker.pid)}
    readers = [mb for pid, mb in peaks.items() if "pipeline.extract.server" in command_line(pid)]
    workers = [mb for pid, mb in peaks.items()
               if "pipeline.extract.server" not in command_line(pid)]

    assert readers, "the readers ran in their sandbox processes"
    assert max(readers) <= stack.settings.parser_memory_mb
    assert max(workers) <= stack.settings.worker_max_memory_mb


NOT_TEXT = {*map(chr, (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)),
            "\ufffe", "\uffff"}


def test_pdf_text_joins_hyphenated_words_and_keeps_no_control_characters(
        stack: Stack, ingested: dict) -> None:
    texts = {path: stack.text(document_id) or "" for path, document_id in ingested.items()
             if path.endswith(".pdf")}

    found = {path: sorted(NOT_TEXT.intersection(text)) for path, text in texts.items()}
    assert {path: chars for path, chars in found.items() if chars} == {}
    # PDFium marks these words, hyphenated across a line, with U+FFFE: a search for
    # the whole word must find them.
    assert "Widerspruchsbeweisen" in texts["pdf/GeoTopo-komprimiert.pdf"]
    assert "adipiscing" in texts["pdf/multicolumn.pdf"]
