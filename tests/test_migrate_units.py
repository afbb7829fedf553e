"""The migration's small parts alone: names, encodings, rules, streams, progress."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile

import pytest

from pipeline.migration.entries import EntryRefused
from pipeline.migration.legacy_names import decode_legacy
from pipeline.migration.options import BadRule, FolderRule, MigrationOptions
from pipeline.migration.progress import Progress
from pipeline.migration.safety import (
    ArchiveMeter,
    ExpansionBudget,
    Limits,
    safe_member_path,
)
from pipeline.migration.sources.kinds import archive_kind
from pipeline.migration.streams import DecompressingReader
from pipeline.migration.throttle import InFlightLimit

LIMITS = Limits(max_expanded_bytes=10**9, max_ratio=100, ratio_after_bytes=1024 * 1024,
                max_depth=5, max_file_size=10**9)


@pytest.mark.parametrize("name, expected", [
    ("docs/a.pdf", "docs/a.pdf"),
    ("./docs//a.pdf", "docs/a.pdf"),
    ("docs\\sub\\a.pdf", "docs/sub/a.pdf"),
])
def test_safe_member_paths_are_normalised(name: str, expected: str) -> None:
    assert safe_member_path(name) == expected


@pytest.mark.parametrize("name", [
    "../a.pdf", "docs/../../a.pdf", "/etc/passwd", "C:\\Windows\\a.pdf", "c:a.pdf",
    "\\\\server\\share\\a.pdf", "..\\a.pdf", "a\x00.pdf", "", "./",
])
def test_escaping_member_paths_are_refused(name: str) -> None:
    with pytest.raises(EntryRefused) as refused:
        safe_member_path(name)
    assert refused.value.code == "unsafe_path"


@pytest.mark.parametrize("text, encoding, fallback", [
    ("Überweisung März.pdf", "cp437", "cp437"),
    ("Größe.txt", "latin-1", "cp1252"),
    ("Größenänderung.doc", "cp1252", "cp1252"),
    ("审计报告.doc", "gbk", "cp437"),
    ("中文.doc", "gbk", "cp1252"),
    ("Überweisung.pdf", "utf-8", "cp437"),
])
def test_legacy_names_are_read_in_the_right_code_page(text: str, encoding: str,
                                                      fallback: str) -> None:
    assert decode_legacy(text.encode(encoding), fallback) == text


def test_undecodable_names_never_fail() -> None:
    assert decode_legacy(bytes(range(128, 256)), "cp1252")


def test_folder_rules_give_the_deepest_category_and_all_tags() -> None:
    options = MigrationOptions(category="other", tags=("old",), rules=(
        FolderRule.parse("Archiv=category:medical"),
        FolderRule.parse("archiv/rechnungen=category:invoice"),
        FolderRule.parse("20*=tag:dated"),
    ))
    labels = options.labels("Archiv/Rechnungen/2019/a.pdf")
    assert labels == ("invoice", ["old", "dated"])
    assert options.labels("Archiv/Befunde/a.pdf") == ("medical", ["old"])
    assert options.labels("a.pdf") == ("other", ["old"])


@pytest.mark.parametrize("text", ["nofolder", "X=category", "X=colour:red", "=tag:a"])
def test_bad_folder_rules_are_refused(text: str) -> None:
    with pytest.raises(BadRule):
        FolderRule.parse(text)


def test_globs_match_names_or_paths() -> None:
    options = MigrationOptions(include=("*.PDF",), exclude=("tmp/*",))
    assert options.includes("a/b/scan.pdf") and not options.includes("a/b/scan.txt")
    assert options.skip_reason("tmp/scan.pdf")[0] == "excluded"
    assert options.skip_reason("__MACOSX/._scan.pdf")[0] == "ignored"
    assert options.skip_reason("docs/scan.pdf") is None


def _tar_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    return buffer.getvalue()


@pytest.mark.parametrize("wrap, kind", [
    (lambda data: data, "tar"), (gzip.compress, "gzip"), (bz2.compress, "bzip2"),
    (lzma.compress, "xz"),
])
def test_archives_are_told_by_content(wrap, kind: str) -> None:  # noqa: ANN001
    assert archive_kind(wrap(_tar_bytes())) == kind


def test_compressed_files_that_hold_no_tar_are_documents() -> None:
    assert archive_kind(gzip.compress(b"%PDF-1.4 a single gzipped pdf")) is None
    assert archive_kind(b"%PDF-1.4") is None


@pytest.mark.parametrize("compress, kind", [
    (gzip.compress, "gzip"), (bz2.compress, "bzip2"), (lzma.compress, "xz")])
def test_concatenated_members_are_read_on(compress, kind: str) -> None:  # noqa: ANN001
    data = compress(b"first ") + compress(b"second") + b"\x00" * 512
    meter = ArchiveMeter("x", ExpansionBudget(LIMITS), compressed=lambda: len(data))
    assert DecompressingReader(io.BytesIO(data), kind, meter).read() == b"first second"


def test_a_stream_that_expands_past_the_ratio_stops() -> None:
    from pipeline.migration.entries import ArchiveStopped

    data = gzip.compress(bytes(50 * 1024 * 1024))
    reader = DecompressingReader(io.BytesIO(data), "gzip", None)  # type: ignore[arg-type]
    reader.meter = ArchiveMeter("bomb", ExpansionBudget(LIMITS),
                                compressed=lambda: reader.raw.count)
    with pytest.raises(ArchiveStopped):
        while reader.read(1024 * 1024):
            pass
    assert reader.meter.expanded < len(data) * 100 + 1024 * 1024


def test_throttle_waits_until_the_count_drops() -> None:
    counts = iter([3, 3, 1])
    waited = []
    limit = InFlightLimit(3, lambda: next(counts), on_wait=waited.append)
    for _ in range(3):
        limit.wait_for_room()
        limit.taken()
    limit.wait_for_room()
    assert waited == [3, 3]


def test_throttle_gives_up_at_the_deadline() -> None:
    import time

    from pipeline.migration.throttle import OutOfTime

    limit = InFlightLimit(1, lambda: 1, deadline=time.monotonic() + 0.3)
    limit.wait_for_room()
    limit.taken()
    started = time.monotonic()
    with pytest.raises(OutOfTime):
        limit.wait_for_room()
    assert time.monotonic() - started < 5


def test_progress_on_a_terminal_redraws_one_line_with_an_eta() -> None:
    out = io.StringIO()
    progress = Progress(out, on_terminal=True, fraction=lambda: 0.25)
    progress.taken(2_500_000)
    progress.counted(refused=1)
    line = progress.line()
    assert "1 files" in line and "2.5 MB" in line and "25%" in line and "ETA" in line
    assert "refused 1" in line
    assert out.getvalue().startswith("\r\x1b[K")


def test_tar_members_are_judged_by_ratio_each_on_its_own() -> None:
    from pipeline.migration.entries import ArchiveStopped
    from pipeline.migration.sources.tarred import TarPlace, tar_entries

    def tar_gz(sizes: dict[str, int]) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as archive:
            for name, size in sizes.items():
                info = tarfile.TarInfo(name)
                info.size = size
                archive.addfile(info, io.BytesIO(bytes(size)))
        return gzip.compress(raw.getvalue())

    floor = 8 * 1024 * 1024
    limits = Limits(max_expanded_bytes=10**9, max_ratio=100, ratio_after_bytes=floor,
                    max_depth=5, max_file_size=10**9)

    def read_all(data: bytes) -> list[str]:
        place = TarPlace("", "a:", 1, ArchiveMeter("t.tar.gz", ExpansionBudget(limits)))
        names = []
        for entry in tar_entries(io.BytesIO(data), "gzip", place):
            names.append(entry.path)
            for _ in entry.chunks():
                pass
        return names

    # Three blank members of 6 MiB each: 18 MiB from a few KB, none past the floor.
    small = {f"page-{n}.bmp": 6 * 1024 * 1024 for n in range(3)}
    assert read_all(tar_gz(small)) == list(small)
    # One member past the floor at over 100:1 stops the stream there.
    with pytest.raises(ArchiveStopped, match="big.bin expanded"):
        read_all(tar_gz({"page.bmp": 1024, "big.bin": 2 * floor}))
