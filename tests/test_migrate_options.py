"""What users ask of ``sluice migrate``: labels, maps, globs, dry runs, output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.db.models import MigrationRun
from tests.support.migration import (
    make_zip,
    migrate,
    run_documents,
    unique_bytes,
)
from tests.support.stack import Stack

MODIFIED = datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC)


def office_tree(root: Path) -> Path:
    files = {
        "Rechnungen/2019/januar.txt": unique_bytes("invoice 2019"),
        "Rechnungen/2020/februar.txt": unique_bytes("invoice 2020"),
        "Befunde/labor.txt": unique_bytes("lab result"),
        "Privat/urlaub.txt": unique_bytes("holiday"),
        "Befunde/rohdaten.log": unique_bytes("raw"),
        "Befunde/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "Thumbs.db": b"thumbs",
        ".git/config": b"[core]",
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (MODIFIED.timestamp(), MODIFIED.timestamp()))
    make_zip(root / "Befunde/alt.zip", [("2008/roentgen.txt", unique_bytes("x-ray"))])
    return root


def test_labels_maps_and_globs_shape_what_comes_in(stack: Stack,
                                                   tmp_path: Path) -> None:
    tree = office_tree(tmp_path / "server")
    rules = tmp_path / "maps.txt"
    rules.write_text("# folder maps\nBefunde=category:medical\n\n"
                     "2008=tag:archiv-2008\n")

    result = migrate(stack, tree, "--category", "other", "--tag", "altbestand",
                     "--map", "Rechnungen=category:invoice", "--map", "2019=tag:y2019",
                     "--map-file", str(rules), "--exclude", "Privat/*",
                     "--include", "*.txt", "--uploaded-by", "migration-team")

    assert result.returncode == 0, result.stderr
    documents = {d.source_path: d for d in run_documents(stack, result.run_id)}
    assert sorted(documents) == [
        "Befunde/alt.zip/2008/roentgen.txt", "Befunde/labor.txt",
        "Rechnungen/2019/januar.txt", "Rechnungen/2020/februar.txt"]
    january = documents["Rechnungen/2019/januar.txt"]
    assert (january.category, january.tags) == ("invoice", ["altbestand", "y2019"])
    assert documents["Rechnungen/2020/februar.txt"].tags == ["altbestand"]
    xray = documents["Befunde/alt.zip/2008/roentgen.txt"]
    assert (xray.category, xray.tags) == ("medical", ["altbestand", "archiv-2008"])
    assert documents["Befunde/labor.txt"].uploaded_by == "migration-team"
    assert january.source_modified_at == MODIFIED

    entries = result.entries
    assert entries["Privat/urlaub.txt"]["outcome"] == "excluded"
    assert entries["Befunde/rohdaten.log"]["outcome"] == "excluded"
    assert entries["Befunde/.DS_Store"]["outcome"] == "ignored"
    assert entries["Thumbs.db"]["outcome"] == "ignored"
    assert entries[".git/"]["outcome"] == "ignored"
    assert not any(path.startswith(".git/config") for path in entries)


def test_report_is_written_as_json_and_csv(stack: Stack, tmp_path: Path) -> None:
    tree = office_tree(tmp_path / "server")
    formula = tree / "=HYPERLINK(1).txt"
    formula.write_bytes(unique_bytes("formula"))
    os.utime(formula, (MODIFIED.timestamp(), MODIFIED.timestamp()))

    result = migrate(stack, tree)

    report = result.report
    reports = stack.settings.var_dir / "reports"
    assert Path(result.summary["report_json"]).parent == reports
    csv_lines = Path(result.summary["report_csv"]).read_text().splitlines()
    assert csv_lines[0].startswith("path,outcome,document_id,error_code")
    assert len(csv_lines) == len(report["entries"]) + 1
    # A name that looks like a formula is never one in a spreadsheet.
    assert any(line.startswith("'=HYPERLINK(1).txt,") for line in csv_lines)
    assert "=HYPERLINK(1).txt" in result.entries
    assert report["summary"]["outcomes"] == result.summary["outcomes"]
    stored = [e for e in report["entries"] if e["outcome"] == "stored"]
    assert stored and all(e["document_id"] and e["sha256"] for e in stored)
    assert all(e["source_modified_at"] == "2009-02-13T23:31:30Z" for e in stored
               if not e["path"].startswith("Befunde/alt.zip/"))


def test_dry_run_shows_what_would_come_in_and_changes_nothing(stack: Stack,
                                                              tmp_path: Path) -> None:
    tree = office_tree(tmp_path / "server")
    (tree / "Rechnungen/2019/kopie.txt").write_bytes(
        (tree / "Rechnungen/2019/januar.txt").read_bytes())
    (tree / "leer.pdf").write_bytes(b"")
    make_zip(tree / "slip.zip", [("../../evil.txt", b"x")])
    runs_before = _run_count(stack)

    plan = _dry_run(stack, tree)

    assert plan["would_take"]["files"] == 8
    by_type = {row["mime_type"]: row for row in plan["by_type"]}
    assert by_type["text/plain"]["files"] == 7 and by_type["text/plain"]["accepted"]
    assert plan["duplicates_in_source"]["files"] == 1
    assert plan["would_fail"]["empty_file"] == 1
    assert plan["refused"]["entries"] == [{
        "path": "slip.zip/../../evil.txt", "code": "unsafe_path",
        "message": "the path climbs out of the archive (..)"}]
    assert plan["archives_opened"] == 2
    assert plan["skipped"] == {"ignored": 3}
    assert _run_count(stack) == runs_before

    migrate(stack, tree)
    again = _dry_run(stack, tree)
    assert again["already_stored"]["files"] == 6


def test_no_wait_returns_with_documents_on_their_way(stack: Stack,
                                                     tmp_path: Path) -> None:
    tree = tmp_path / "quick"
    tree.mkdir()
    (tree / "one.txt").write_bytes(unique_bytes("no wait"))

    result = migrate(stack, tree, "--no-wait")

    assert result.returncode == 0, result.stderr
    outcome = result.entries["one.txt"]["outcome"]
    assert outcome in ("pending", "stored")
    stack.wait([d.id for d in run_documents(stack, result.run_id)])


def test_progress_is_logged_when_not_on_a_terminal(stack: Stack,
                                                   tmp_path: Path) -> None:
    tree = tmp_path / "logged"
    tree.mkdir()
    (tree / "one.txt").write_bytes(unique_bytes("progress"))

    result = migrate(stack, tree)

    assert "migration progress 1 files" in result.stderr
    assert "\x1b[K" not in result.stderr


def test_unknown_category_is_a_usage_error(stack: Stack, tmp_path: Path) -> None:
    result = migrate(stack, tmp_path, "--map", "X=category:nonsense")
    assert result.returncode == 2
    assert "nonsense" in result.stderr


@pytest.mark.parametrize("name, content", [
    ("letter.txt", b"hello"),
    ("fake.zip", b"this is text, whatever the name says\n"),
    ("scan.pdf", b"%PDF-1.4\n%%EOF\n"),
])
def test_a_file_that_is_no_archive_is_a_usage_error(stack: Stack, tmp_path: Path,
                                                    name: str, content: bytes) -> None:
    document = tmp_path / name
    document.write_bytes(content)
    result = migrate(stack, document)
    assert result.returncode == 2, result.stderr
    assert "neither a folder nor a zip or tar archive" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [(), ("--dry-run",)])
def test_a_fifo_named_like_an_archive_is_a_usage_error_and_never_opened(
        stack: Stack, tmp_path: Path, args: tuple[str, ...]) -> None:
    fifo = tmp_path / "x.zip"
    os.mkfifo(fifo)
    # Opening a FIFO for reading blocks until a writer comes: none will.
    result = migrate(stack, fifo, *args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


def _dry_run(stack: Stack, tree: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate", str(tree), "--dry-run", "--json"],
        env=stack.env, cwd=stack.root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    return json.loads(result.stdout)


def _run_count(stack: Stack) -> int:
    with stack.runtime.session() as session:
        return len(session.scalars(select(MigrationRun.id)).all())
