"""The sluice command as people run it: ingest, wait, read the answers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import CORPUS
from tests.support.stack import Stack


def sluice(stack: Stack, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "--log-level", "WARNING", *args],
                          env={**stack.env, **(env or {})}, cwd=stack.root,
                          capture_output=True, text=True, timeout=300)


def unique_copy(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / f"{uuid.uuid4().hex[:6]}-{source.name}"
    target.write_bytes(source.read_bytes() + f"\n% {uuid.uuid4()}\n".encode())
    return target


def test_ingest_wait_json_reports_each_document_and_exits_0(stack: Stack, tmp_path: Path) -> None:
    pdf = unique_copy(tmp_path, CORPUS / "pdf" / "google-doc-document.pdf")

    result = sluice(stack, "ingest", str(pdf), "--category", "medical", "--tag", "scan",
                    "--uploaded-by", "dr_smith", "--wait", "--json")

    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    document = json.loads(line)
    assert document["status"] == "stored" and document["page_count"] == 1
    assert document["category"] == "medical" and document["tags"] == ["scan"]
    assert document["uploaded_by"] == "dr_smith" and document["source"] == "cli"
    assert document["text_length"] > 0 and document["thumbnail_key"]
    assert pdf.exists(), "ingest leaves the originals where they are"


def test_ingest_exits_3_when_an_input_is_rejected(stack: Stack, tmp_path: Path) -> None:
    good = unique_copy(tmp_path, CORPUS / "pdf" / "habibi.pdf")
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes((CORPUS / "hostile" / "truncated.jpg").read_bytes())

    result = sluice(stack, "ingest", str(good), str(bad), "--wait", "--json")

    assert result.returncode == 3, result.stderr
    statuses = {json.loads(line)["original_name"]: json.loads(line) for line in
                result.stdout.splitlines()}
    assert statuses[good.name]["status"] == "stored"
    assert statuses["truncated.jpg"]["error"]["code"] == "corrupt"


def test_a_file_over_the_size_limit_is_refused_and_left_in_place(
        stack: Stack, tmp_path: Path) -> None:
    big = unique_copy(tmp_path, CORPUS / "pdf" / "pdfjs_wikipedia.pdf")

    result = sluice(stack, "ingest", str(big), "--wait", "--json",
                    env={"SLUICE_MAX_FILE_SIZE": "1000"})

    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["code"] == "too_large"
    assert big.exists()


def test_show_and_list_read_what_was_stored(stack: Stack, tmp_path: Path) -> None:
    pdf = unique_copy(tmp_path, CORPUS / "pdf" / "testPDF.pdf")
    ingested = sluice(stack, "ingest", str(pdf), "--wait", "--json")
    document_id = json.loads(ingested.stdout)["id"]

    shown = sluice(stack, "show", document_id, "--json")
    listed = sluice(stack, "list", "--status", "stored", "--limit", "500", "--json")

    assert json.loads(shown.stdout)["id"] == document_id
    assert document_id in {json.loads(line)["id"] for line in listed.stdout.splitlines()}
    assert sluice(stack, "show", str(uuid.uuid4())).returncode == 1


def test_json_output_keeps_one_document_per_line_whatever_its_text(stack: Stack,
                                                                   tmp_path: Path) -> None:
    # U+0085 and U+2028 end a line for many readers (str.splitlines among them).
    pdf = unique_copy(tmp_path, CORPUS / "pdf" / "testPDF.pdf")
    document_id = stack.ingest(pdf, description="first\x85second\u2028third\u2029end")
    stack.wait([document_id])

    listed = sluice(stack, "list", "--limit", "500", "--json")
    shown = sluice(stack, "show", str(document_id), "--json")

    documents = [json.loads(line) for line in listed.stdout.splitlines()]
    assert str(document_id) in {document["id"] for document in documents}
    assert len(shown.stdout.splitlines()) == 1
    assert json.loads(shown.stdout)["description"] == "first\x85second\u2028third\u2029end"
