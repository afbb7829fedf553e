"""Hostile archives: escaping names, links, special files, bombs, nesting, damage."""

from __future__ import annotations

import gzip
import io
import os
import secrets
import sqlite3
import tarfile
import uuid
from contextlib import closing
from pathlib import Path

from pipeline.migration.migrate import MigrationRequest, run_migration
from pipeline.migration.options import MigrationOptions
from pipeline.runtime import Runtime
from tests.support.migration import (
    FIXED_MTIME,
    make_tar,
    make_zip,
    make_zip_bytes,
    migrate,
    run_documents,
    unique_bytes,
)
from tests.support.stack import Stack


def left_in_spool(stack: Stack, run_id: object) -> list[str]:
    """Spool files of this run's documents, and any migration scratch or partial.

    The session stack is shared, so other tests' documents may still be there.
    """
    spool = stack.settings.spool
    ours = {str(d.id) for d in run_documents(stack, run_id)}
    files = [p.name for p in spool.iterdir() if p.name in ours]
    return files + [p.name for p in (spool / ".incoming").iterdir()
                    if p.name.startswith("migrate-") or p.name.split(".")[0] in ours]


def names_anywhere(token: str, roots: list[Path]) -> list[Path]:
    """Files whose name holds ``token`` under ``roots`` (and directly in /tmp)."""
    found = [p for p in Path("/tmp").iterdir() if token in p.name]
    for root in roots:
        for folder, _, files in os.walk(root):
            found += [Path(folder) / name for name in files if token in name]
    return found


def tar_with_specials(path: Path, token: str, outside: Path, safe: bytes) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x",
                linkname: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = kind, linkname, FIXED_MTIME
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add(f"safe/{token}-ok.txt", data=safe)
        add(f"../../{token}-up.txt")
        add(f"/tmp/{token}-abs.txt")
        add("safe/link", tarfile.SYMTYPE, linkname=str(outside))
        add(f"safe/link/{token}-through.txt")
        add("safe/hard", tarfile.LNKTYPE, linkname="/etc/passwd")
        add("safe/fifo", tarfile.FIFOTYPE)
        add("safe/null", tarfile.CHRTYPE)
    return path


def test_escaping_entries_are_refused_and_nothing_lands_outside_the_spool(
        stack: Stack, tmp_path: Path) -> None:
    token = f"escape-{secrets.token_hex(4)}"
    source, outside = tmp_path / "source", tmp_path / "outside"
    source.mkdir()
    outside.mkdir()
    safe_zip, safe_tar = unique_bytes("zip"), unique_bytes("tar")
    make_zip(source / "slip.zip", [
        (f"ok/{token}-ok.txt", safe_zip),
        (f"../../../../../../tmp/{token}-up.txt", b"up"),
        (f"/tmp/{token}-abs.txt", b"abs"),
        (f"..\\..\\{token}-backslash.txt", b"backslash"),
        (f"C:/Windows/{token}-drive.txt", b"drive"),
        (f"ok/../../{token}-climb.txt", b"climb"),
    ])
    tar_with_specials(source / "slip.tar.gz", token, outside, safe_tar)
    (source / "link-to-outside").symlink_to(outside)
    os.mkfifo(source / "a-fifo")

    result = migrate(stack, source)

    assert result.returncode == 3, result.stderr
    codes = {path: e["error_code"] for path, e in result.entries.items()
             if e["outcome"] == "refused"}
    assert codes == {
        f"slip.zip/../../../../../../tmp/{token}-up.txt": "unsafe_path",
        f"slip.zip//tmp/{token}-abs.txt": "unsafe_path",
        f"slip.zip/..\\..\\{token}-backslash.txt": "unsafe_path",
        f"slip.zip/C:/Windows/{token}-drive.txt": "unsafe_path",
        f"slip.zip/ok/../../{token}-climb.txt": "unsafe_path",
        f"slip.tar.gz/../../{token}-up.txt": "unsafe_path",
        f"slip.tar.gz//tmp/{token}-abs.txt": "unsafe_path",
        "slip.tar.gz/safe/link": "link",
        f"slip.tar.gz/safe/link/{token}-through.txt": "unsafe_path",
        "slip.tar.gz/safe/hard": "link",
        "slip.tar.gz/safe/fifo": "special_file",
        "slip.tar.gz/safe/null": "special_file",
        "link-to-outside": "link",
        "a-fifo": "special_file",
    }
    taken = [d for d in run_documents(stack, result.run_id)]
    assert sorted(d.source_path for d in taken) == [
        f"slip.tar.gz/safe/{token}-ok.txt", f"slip.zip/ok/{token}-ok.txt"]
    assert all(d.status == "stored" for d in taken)

    # No file anywhere around was named after an entry: the spool and the store
    # name files by document id.
    assert names_anywhere(token, [tmp_path.parent, stack.root]) == []
    assert list(outside.iterdir()) == []
    assert left_in_spool(stack, result.run_id) == []


def zero_bomb_tar(path: Path, megabytes: int) -> Path:
    """A tar.gz with one member of zeros: honest headers, a bomb in the gzip layer."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("scan.tif")
        info.size = megabytes * 1024 * 1024
        archive.addfile(info, _Zeros(info.size))
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readinto(self, buffer: bytearray) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count

    def readable(self) -> bool:
        return True


def bytes_written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def empty_sqlite_logs(stack: Stack) -> None:
    """Fold the SQLite write-ahead logs into their files before a measurement.

    SQLite copies a log past 1,000 pages into its database from whichever
    connection commits next: megabytes that ``bytes_written`` would otherwise
    count against the migration whenever this process happens to be that one.
    """
    for path in stack.settings.var_dir.glob("*.sqlite"):
        with closing(sqlite3.connect(path, timeout=30)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def migrate_here(stack: Stack, source: Path,
                 **settings: object) -> tuple[dict, int, uuid.UUID]:
    """Run the migration in this process: its report entries, bytes written, run id."""
    runtime = Runtime(stack.settings.model_copy(update=settings))
    empty_sqlite_logs(stack)
    try:
        before = bytes_written()
        summary = run_migration(runtime, stack.app, MigrationRequest(
            source=source, options=MigrationOptions(), max_in_flight=50))
        written = bytes_written() - before
    finally:
        runtime.close()
    entries = {e["path"]: e for e in _read_json(summary.json_path)["entries"]}
    return entries, written, uuid.UUID(summary.run_id)


def _read_json(path: str) -> dict:
    import json

    return json.loads(Path(path).read_text())


def test_gzip_bomb_stops_at_the_ratio_without_writing_the_rest(
        stack: Stack, tmp_path: Path) -> None:
    bomb = zero_bomb_tar(tmp_path / "backup.tar.gz", megabytes=256)
    compressed = bomb.stat().st_size

    entries, written, run_id = migrate_here(stack, bomb)

    assert entries["scan.tif"]["outcome"] == "refused"
    assert entries["scan.tif"]["error_code"] == "decompression_bomb"
    assert entries["."]["error_code"] == "decompression_bomb"
    # An entry is judged by its ratio (100:1) past the floor (64 MiB): never the
    # 256 MB inside.
    floor = stack.settings.migrate_ratio_after_bytes
    assert written < max(floor, compressed * 100) + 4 * 1024 * 1024, written
    assert left_in_spool(stack, run_id) == []


def test_total_expansion_budget_stops_the_archive_early(stack: Stack,
                                                        tmp_path: Path) -> None:
    files = [(f"part-{n}.txt", secrets.token_hex(512 * 1024).encode())
             for n in range(8)]
    archive = make_tar(tmp_path / "big.tar.gz", files)
    budget = 3 * 1024 * 1024

    entries, written, _ = migrate_here(stack, archive,
                                       migrate_max_expanded_bytes=budget)

    taken = [p for p, e in entries.items() if e["outcome"] in ("stored", "duplicate")]
    assert 1 <= len(taken) <= 3, entries
    assert entries["."]["error_code"] == "decompression_bomb"
    assert written < budget + 2 * 1024 * 1024, written


def test_declared_zip_bomb_writes_nothing(stack: Stack, tmp_path: Path) -> None:
    from tests.conftest import CORPUS

    entries, written, _ = migrate_here(stack, CORPUS / "hostile/zipbomb.zip")

    codes = {e["error_code"] for path, e in entries.items() if path != "."}
    assert codes == {"decompression_bomb"}
    assert written < 1024 * 1024, written


def test_nested_archives_stop_at_the_depth_limit(stack: Stack, tmp_path: Path) -> None:
    contents = {level: unique_bytes(f"level {level}") for level in range(1, 8)}
    inner = make_zip_bytes([("f7.txt", contents[7])])
    for level in range(6, 1, -1):
        if level == 3:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                for name, data in ((f"f{level}.txt", contents[level]),
                                   (f"l{level + 1}.zip", inner)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
            inner = buffer.getvalue()
        else:
            name = f"l{level + 1}.tar.gz" if level == 2 else f"l{level + 1}.zip"
            inner = make_zip_bytes([(f"f{level}.txt", contents[level]), (name, inner)])
    top = make_zip(tmp_path / "top.zip", [("f1.txt", contents[1]), ("l2.zip", inner)])

    result = migrate(stack, top)

    entries = result.entries
    chain = "l2.zip/l3.tar.gz/l4.zip/l5.zip"
    assert entries["f1.txt"]["outcome"] == "stored"
    assert entries["l2.zip/f2.txt"]["outcome"] == "stored"
    assert entries["l2.zip/l3.tar.gz/f3.txt"]["outcome"] == "stored"
    assert entries[f"{chain}/f5.txt"]["outcome"] == "stored"
    assert entries[f"{chain}/l6.zip"]["error_code"] == "nested_too_deep"
    assert not any("f6.txt" in path for path in entries)
    assert result.returncode == 3


def test_truncated_tar_gz_reports_what_it_could_read(stack: Stack,
                                                     tmp_path: Path) -> None:
    files = [(f"folder/doc-{n:02d}.txt", secrets.token_hex(10_000).encode())
             for n in range(20)]
    whole = make_tar(tmp_path / "whole.tar.gz", files)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    result = migrate(stack, cut)

    entries = result.entries
    assert result.returncode == 3
    source = entries["."]
    assert (source["outcome"], source["error_code"]) == ("refused", "corrupt")
    taken = [p for p, e in entries.items() if e["outcome"] == "stored"]
    assert 6 <= len(taken) <= 10
    assert taken == [name for name, _ in files[:len(taken)]]


def test_zip_without_its_directory_is_salvaged_from_local_headers(
        stack: Stack, tmp_path: Path) -> None:
    files = [(f"doc-{n:02d}.txt", secrets.token_hex(10_000).encode())
             for n in range(20)]
    whole = make_zip(tmp_path / "whole.zip", files)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    result = migrate(stack, cut)

    entries = result.entries
    taken = [p for p, e in entries.items() if e["outcome"] == "stored"]
    assert taken == [name for name, _ in files[:len(taken)]] and len(taken) >= 8
    broken = [p for p, e in entries.items() if e["outcome"] == "refused" and p != "."]
    assert broken == [files[len(taken)][0]]
    assert entries["."]["error_code"] == "corrupt"
    assert f"read {len(taken) + 1} entries" in entries["."]["error_message"]


def test_folders_of_a_salvaged_zip_are_not_documents(stack: Stack,
                                                     tmp_path: Path) -> None:
    from tests.support.stack import REPO

    source = tmp_path / "server"
    source.mkdir()
    damaged = REPO / "tests/corpus/office/testWORD_truncated.docx"
    (source / "trunc.zip").write_bytes(damaged.read_bytes())

    result = migrate(stack, source)

    entries = result.entries
    assert entries["trunc.zip"]["error_code"] == "corrupt"
    # Its local headers name the folders "_rels/" and "docProps/": no documents.
    assert not [p for p in entries if p.rstrip("/") in ("trunc.zip/_rels",
                                                        "trunc.zip/docProps")]
    assert not [p for p, e in entries.items() if e["error_code"] == "empty_file"]
    assert entries["trunc.zip/[Content_Types].xml"]["outcome"] == "stored"


def test_legacy_name_encodings_are_decoded(stack: Stack, tmp_path: Path) -> None:
    from tests.support.migration import raw_name_zip

    source = tmp_path / "server"
    source.mkdir()
    texts = {key: unique_bytes(key) for key in ("cp437", "gbk", "tar", "folder")}
    raw_name_zip(source / "dos.zip", "Überweisung März.txt".encode("cp437"),
                 texts["cp437"])
    raw_name_zip(source / "cn.zip", "审计报告.txt".encode("gbk"), texts["gbk"])
    with tarfile.open(source / "old.tar", "w", format=tarfile.GNU_FORMAT,
                      encoding="latin-1") as archive:
        info = tarfile.TarInfo("Größe.txt")
        info.size = len(texts["tar"])
        archive.addfile(info, io.BytesIO(texts["tar"]))
    latin1_name = os.fsdecode("Bestätigung.txt".encode("latin-1"))
    (source / latin1_name).write_bytes(texts["folder"])

    result = migrate(stack, source)

    assert result.returncode == 0, result.stderr
    paths = {d.source_path for d in run_documents(stack, result.run_id)}
    assert paths == {"dos.zip/Überweisung März.txt", "cn.zip/审计报告.txt",
                     "old.tar/Größe.txt", "Bestätigung.txt"}


def blank_scan_bmp() -> bytes:
    """A blank A4 page scanned at 300 dpi in grey: 8.7 MB that deflate to ~10 KB."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (2480, 3508), 255).save(buffer, "BMP")
    return buffer.getvalue()


def test_highly_compressible_scans_in_archives_come_in(stack: Stack,
                                                       tmp_path: Path) -> None:
    scan = blank_scan_bmp()
    # Unique content, so that it is stored rather than a duplicate of another test's.
    page = scan[:-64] + secrets.token_bytes(64)
    source = tmp_path / "scans"
    source.mkdir()
    zipped = make_zip(source / "scans.zip", [("blank-page.bmp", page)])
    make_tar(source / "scans.tar.gz", [("blank-page.bmp", page)])
    assert len(page) > 100 * zipped.stat().st_size  # far beyond 100:1

    result = migrate(stack, source)

    assert result.returncode == 0, result.stderr
    outcomes = {path: e["outcome"] for path, e in result.entries.items()}
    assert outcomes["scans.zip/blank-page.bmp"] in ("stored", "duplicate"), result.entries
    assert outcomes["scans.tar.gz/blank-page.bmp"] in ("stored", "duplicate")
    assert sorted(outcomes.values()).count("stored") == 1


def zeros_zip(path: Path, members: list[tuple[str, bytes | int]]) -> Path:
    """A zip whose int-sized members are that many zero bytes, written streaming."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2011, 3, 14, 9, 26, 54))
            info.compress_type = zipfile.ZIP_DEFLATED
            if isinstance(data, bytes):
                archive.writestr(info, data)
                continue
            info.file_size = data
            with archive.open(info, "w", force_zip64=True) as member:
                block = bytes(4 * 1024 * 1024)
                for start in range(0, data, len(block)):
                    member.write(block[:data - start])
    return path


def test_a_bomb_member_is_refused_alone(stack: Stack, tmp_path: Path) -> None:
    small, after = unique_bytes("small sibling"), unique_bytes("after the bomb")
    archive = zeros_zip(tmp_path / "mixed.zip", [
        ("small.txt", small), ("zeros.bin", 256 * 1024 * 1024), ("after.txt", after)])

    entries, written, run_id = migrate_here(stack, archive)

    assert entries["zeros.bin"]["outcome"] == "refused"
    assert entries["zeros.bin"]["error_code"] == "decompression_bomb"
    assert "over 100:1" in entries["zeros.bin"]["error_message"]
    assert entries["small.txt"]["outcome"] == "stored"
    assert entries["after.txt"]["outcome"] == "stored"
    assert entries["."]["outcome"] == "unpacked"
    assert written < 1024 * 1024, written  # refused from its header, unread
    assert left_in_spool(stack, run_id) == []


def test_a_member_past_the_budget_is_refused_and_smaller_siblings_come_in(
        stack: Stack, tmp_path: Path) -> None:
    first, big, last = (secrets.token_bytes(size) for size in
                        (1024 * 1024, 3 * 1024 * 1024, 1024))
    archive = make_zip(tmp_path / "budget.zip",
                       [("first.bin", first), ("big.bin", big), ("last.bin", last)])

    entries, _, _ = migrate_here(stack, archive,
                                 migrate_max_expanded_bytes=2 * 1024 * 1024)

    assert entries["first.bin"]["outcome"] in ("stored", "failed")
    assert entries["big.bin"]["error_code"] == "decompression_bomb"
    assert "expansion budget" in entries["big.bin"]["error_message"]
    assert entries["last.bin"]["outcome"] in ("stored", "failed")
    assert entries["last.bin"]["error_code"] != "decompression_bomb"
