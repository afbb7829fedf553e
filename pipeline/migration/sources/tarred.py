"""Members of a tar stream (plain, gzip, bzip2 or xz), read in order, never seeking.

The stream is decompressed by ``DecompressingReader``, which counts every byte
it produces against the archive's meter, so skipping a member (tar reads
through it) is measured like reading it. Links, devices and FIFOs are refused
from their headers; a member whose path passes through a link seen earlier in
the archive (``docs/link -> /tmp``, then ``docs/link/x``) is refused too.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

from pipeline.migration.entries import (
    CORRUPT,
    LINK,
    SPECIAL_FILE,
    TOO_LARGE,
    UNSAFE_PATH,
    ArchiveDamaged,
    Entry,
    EntryRefused,
    Refusal,
    refused,
)
from pipeline.migration.legacy_names import decode_tar_name
from pipeline.migration.safety import ArchiveMeter, safe_member_path, through_link
from pipeline.migration.streams import (
    CountingReader,
    DecompressingReader,
    Readable,
    read_chunks,
)

READ_ERRORS = (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError)


class TarPlace:
    def __init__(self, prefix: str, key_prefix: str, depth: int, meter: ArchiveMeter):
        self.prefix = prefix
        self.key_prefix = key_prefix
        self.depth = depth
        self.meter = meter
        self.links: set[str] = set()

    def key(self, index: int) -> str:
        return f"{self.key_prefix}!{index}"

    def display(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path


class _MeteredReader:
    """A plain tar: nothing to decompress, but its bytes still spend the budget."""

    def __init__(self, source: Readable, meter: ArchiveMeter):
        self.raw = CountingReader(source)
        self.meter = meter

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.meter.add(len(data))
        return data


def tar_reader(source: Readable, kind: str, meter: ArchiveMeter) -> Readable:
    """The tar bytes of ``source``, metered; sets the meter's compressed side."""
    reader = _MeteredReader(source, meter) if kind == "tar" else \
        DecompressingReader(source, kind, meter)
    meter.compressed = lambda: reader.raw.count
    return reader


def tar_entries(source: Readable, kind: str, place: TarPlace) -> Iterator[Entry]:
    """The members of the tar in ``source``; returns how many headers were read."""
    reader = tar_reader(source, kind, place.meter)
    try:
        archive = tarfile.open(fileobj=reader, mode="r|", encoding="utf-8",
                               errors="surrogateescape")
    except (ArchiveDamaged, *READ_ERRORS) as error:
        raise ArchiveDamaged(f"not a readable tar: {error}") from error

    index = 0
    while True:
        try:
            member = archive.next()
        except (ArchiveDamaged, *READ_ERRORS) as error:
            raise ArchiveDamaged(f"damaged after {index} entries: {error}") from error
        if member is None:
            return index
        # Stream mode keeps every header it has read; one at a time is enough.
        archive.members.clear()
        # The member's bytes, and the skip over them, are judged on their own.
        place.meter.start_member(place.display(decode_tar_name(member.name)))
        entry = _member_entry(archive, member, index, place)
        index += 1
        if entry is not None:
            yield entry


def _member_entry(archive: tarfile.TarFile, member: tarfile.TarInfo, index: int,
                  place: TarPlace) -> Entry | None:
    name = decode_tar_name(member.name)
    key, display = place.key(index), place.display(name)
    facts = {"size": member.size if member.isreg() else None,
             "modified_at": _mtime(member)}
    try:
        path = safe_member_path(name)
    except EntryRefused as error:
        return refused(key, display, place.depth, error.code, error.message, **facts)
    if member.isdir():
        return None

    display = place.display(path)
    refusal = _refusal(member, path, place)
    if refusal is not None:
        return Entry(key=key, path=display, depth=place.depth, refusal=refusal, **facts)
    return Entry(key=key, path=display, depth=place.depth,
                 opener=lambda: _read_member(archive, member), **facts)


def _refusal(member: tarfile.TarInfo, path: str, place: TarPlace) -> Refusal | None:
    if member.issym() or member.islnk():
        place.links.add(path)
        kind = "symbolic" if member.issym() else "hard"
        return Refusal(LINK, f"{kind} link to {decode_tar_name(member.linkname)}")
    if not member.isreg():
        return Refusal(SPECIAL_FILE, "not a regular file (device, FIFO or other)")
    via = through_link(path, place.links)
    if via is not None:
        return Refusal(UNSAFE_PATH, f"the path passes through the link {via}")
    limit = place.meter.limits.max_file_size
    if member.size > limit:
        return Refusal(TOO_LARGE, f"{member.size} bytes is over the limit of {limit}")
    return None


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    try:
        source = archive.extractfile(member)
        if source is None:
            raise EntryRefused(SPECIAL_FILE, "no content to read")
        yield from read_chunks(source)
    except READ_ERRORS as error:
        raise EntryRefused(CORRUPT, f"damaged member: {error}") from error


def _mtime(member: tarfile.TarInfo) -> datetime | None:
    try:
        return datetime.fromtimestamp(member.mtime, UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        return None
