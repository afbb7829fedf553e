"""The corpus's archives, migrated with ``sluice migrate``, end as the manifest says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.expectations import outcome
from tests.support import migration
from tests.support.migration import Migration, migrate, run_documents
from tests.support.stack import Stack

MANIFEST = {e["path"]: e for e in json.loads((CORPUS / "manifest.json").read_text())}
# In this order: the tar.gz and the .tgz repeat the contents of the zips before them.
ARCHIVES = [
    "hostile/legacy_archive.zip", "hostile/legacy_archive.tar.gz",
    "archive/test-documents.zip", "archive/test-documents.tgz",
    "hostile/zipbomb.zip", "hostile/zipslip.zip", "hostile/tarslip.tar.gz",
    "archive/droste.zip", "archive/gbk.zip", "archive/testZipEncrypted.zip",
    "archive/testZIP_corrupted_oom.zip",
]
LEGACY_MTIME = datetime(2011, 3, 14, 9, 26, 54, tzinfo=UTC)


@pytest.fixture(scope="module", params=["embedded", "services"])
def fresh_stack(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migration.fresh_stack(request, tmp_path_factory)


@pytest.fixture(scope="module")
def migrated(fresh_stack: Stack) -> dict[str, Migration]:
    """Every corpus archive migrated once, in order, into an empty Sluice."""
    return {path: migrate(fresh_stack, CORPUS / path) for path in ARCHIVES}


def members(result: Migration) -> dict[str, dict]:
    """The report's entries without the line for the source archive itself."""
    return {path: entry for path, entry in result.entries.items() if path != "."}


def test_legacy_zip_comes_in_as_manifest_says(fresh_stack: Stack,
                                              migrated: dict) -> None:
    result = migrated["hostile/legacy_archive.zip"]
    manifest = MANIFEST["hostile/legacy_archive.zip"]
    assert result.returncode == 0, result.stderr
    reported = members(result)
    assert set(reported) == {member["name"] for member in manifest["members"]}

    seen: set[str] = set()
    for member in manifest["members"]:
        entry = reported[member["name"]]
        expected, codes = outcome(MANIFEST[member["copy_of"]])
        if member["sha256"] in seen:
            assert entry["outcome"] == "duplicate", member["name"]
        elif expected == "failed":
            assert entry["outcome"] == "failed" and entry["error_code"] in codes
        else:
            assert entry["outcome"] == "stored", (member["name"], entry)
        seen.add(member["sha256"])
        assert entry["sha256"] == member["sha256"] and entry["size"] == member["size"]
    assert len(seen) == 29


def test_legacy_members_keep_names_folders_and_dates(fresh_stack: Stack,
                                                     migrated: dict) -> None:
    for archive in ("hostile/legacy_archive.zip", "hostile/legacy_archive.tar.gz"):
        result = migrated[archive]
        documents = {d.source_path: d
                     for d in run_documents(fresh_stack, result.run_id)}
        assert len(documents) == 30, "every member once, nothing twice"
        for member in MANIFEST[archive]["members"]:
            document = documents[member["name"]]
            assert document.source == "migration"
            assert document.original_name == member["name"].rsplit("/", 1)[-1]
            assert document.source_modified_at == LEGACY_MTIME
            assert document.sha256 == member["sha256"]
    assert "Altarchiv_2009/Eingang/2009-01/Überweisung März.pdf" in documents
    assert "Altarchiv_2009/Eingang/2009-03/جدول.pdf" in documents


def test_identical_content_is_one_stored_document_and_duplicates(
        fresh_stack: Stack, migrated: dict) -> None:
    zip_docs = {d.source_path: d for d in run_documents(
        fresh_stack, migrated["hostile/legacy_archive.zip"].run_id)}
    brief = zip_docs["Altarchiv_2009/Eingang/2009-02/Brief.pdf"]
    copy = zip_docs["Altarchiv_2009/Eingang/2009-02/Kopie von Brief.pdf"]
    assert {brief.status, copy.status} == {"stored", "duplicate"}
    original = brief if brief.status == "stored" else copy
    assert (copy if original is brief else brief).duplicate_of == original.id

    # The tar.gz holds the same files: each is a duplicate of what the zip stored.
    stored_by_zip = {d.sha256: d.id for d in zip_docs.values() if d.status == "stored"}
    tar_result = migrated["hostile/legacy_archive.tar.gz"]
    assert tar_result.returncode == 0, tar_result.stderr
    for document in run_documents(fresh_stack, tar_result.run_id):
        assert document.status == "duplicate", document.source_path
        assert document.duplicate_of == stored_by_zip[document.sha256]


def test_tika_test_documents_are_unpacked_and_processed(fresh_stack: Stack,
                                                        migrated: dict) -> None:
    zipped = migrated["archive/test-documents.zip"]
    tarred = migrated["archive/test-documents.tgz"]
    assert len(members(zipped)) == 9 and len(members(tarred)) == 9
    outcomes = [e["outcome"] for e in members(zipped).values()]
    # testRTF.rtf is also in the legacy archive migrated before.
    assert set(outcomes) <= {"stored", "duplicate", "failed"}
    assert outcomes.count("stored") + outcomes.count("duplicate") >= 7
    # The .tgz puts the same files under a folder; their contents are already in.
    assert all(path.startswith("test-documents/") for path in members(tarred))
    assert {e["outcome"] for e in members(tarred).values()} <= {"duplicate", "failed"}


def test_zip_bomb_is_refused_before_anything_is_written(fresh_stack: Stack,
                                                        migrated: dict) -> None:
    result = migrated["hostile/zipbomb.zip"]
    assert result.returncode == 3
    entries = members(result)
    assert len(entries) == 8
    assert {e["outcome"] for e in entries.values()} == {"refused"}
    assert {e["error_code"] for e in entries.values()} == {"decompression_bomb"}
    assert run_documents(fresh_stack, result.run_id) == []


@pytest.mark.parametrize("archive, taken, refused", [
    ("hostile/zipslip.zip", {"readme.txt"},
     {"../../../../../../tmp/zipslip_shared.txt": "unsafe_path",
      "/tmp/zipslip_abs_shared.txt": "unsafe_path",
      "docs/../../zipslip_escape_shared.txt": "unsafe_path"}),
    ("hostile/tarslip.tar.gz", {"docs/readme.txt"},
     {"../tarslip_shared.txt": "unsafe_path",
      "/tmp/tarslip_abs_shared.txt": "unsafe_path",
      "docs/link_out": "link",
      "docs/link_out/tarslip_via_symlink_shared.txt": "unsafe_path",
      "docs/passwd": "link"}),
])
def test_escaping_members_are_refused_and_never_written(
        fresh_stack: Stack, migrated: dict, archive: str, taken: set[str],
        refused: dict[str, str]) -> None:
    result = migrated[archive]
    assert result.returncode == 3
    entries = members(result)
    # Both readme files hold the same text: the second is a duplicate.
    assert {p for p, e in entries.items()
            if e["outcome"] in ("stored", "duplicate")} == taken
    assert {p: e["error_code"] for p, e in entries.items()
            if e["outcome"] == "refused"} == refused
    for name in ("zipslip_shared.txt", "zipslip_abs_shared.txt",
                 "zipslip_escape_shared.txt", "tarslip_shared.txt",
                 "tarslip_abs_shared.txt",
                 "tarslip_via_symlink_shared.txt"):
        assert not (Path("/tmp") / name).exists()
        assert not list(fresh_stack.root.rglob(name))


def test_zip_that_contains_itself_stops_there(fresh_stack: Stack,
                                              migrated: dict) -> None:
    result = migrated["archive/droste.zip"]
    entries = members(result)
    assert entries["droste.jpg"]["outcome"] == "stored"
    assert entries["droste.zip"]["outcome"] == "refused"
    assert entries["droste.zip"]["error_code"] == "recursive_archive"
    assert len(entries) == 2


def test_gbk_names_are_decoded(fresh_stack: Stack, migrated: dict) -> None:
    entries = members(migrated["archive/gbk.zip"])
    name = "审计压缩包文件检索测试/集团邮件审计系统2021年自动巡检需求文档_V4.0.doc"
    assert list(entries) == [name]
    assert (entries[name]["outcome"], entries[name]["error_code"]) == ("failed",
                                                                       "empty_file")


def test_encrypted_member_is_refused_alone(fresh_stack: Stack, migrated: dict) -> None:
    result = migrated["archive/testZipEncrypted.zip"]
    entries = members(result)
    assert entries["unencrypted.txt"]["outcome"] == "stored"
    assert entries["encrypted.txt"]["outcome"] == "refused"
    assert entries["encrypted.txt"]["error_code"] == "encrypted"
    assert result.returncode == 3


def test_corrupt_zip_reports_what_it_could_read(fresh_stack: Stack,
                                                migrated: dict) -> None:
    result = migrated["archive/testZIP_corrupted_oom.zip"]
    assert result.returncode == 3
    entries = result.entries
    source = entries["."]
    assert (source["outcome"], source["error_code"]) == ("refused", "corrupt")
    assert "read 1 entries" in entries["."]["error_message"]
    assert entries["hello.txt"]["error_code"] == "corrupt"
    assert run_documents(fresh_stack, result.run_id) == []


def test_nothing_is_left_in_the_spool(fresh_stack: Stack, migrated: dict) -> None:
    spool = fresh_stack.settings.spool
    assert [p.name for p in spool.iterdir() if p.is_file()] == []
    assert list((spool / ".incoming").iterdir()) == []
