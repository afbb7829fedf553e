"""Members of a zip file, read one at a time from its central directory.

Each member is checked before a byte of it is read: its name, its type (links,
devices), encryption, its compression method, and its declared sizes against
the limits: each member on its own, by its ratio (above the size floor) and by
what is left of the expansion budget, so a bomb is refused unread and its
siblings still come in. Members that lie about their size are caught while
they stream (``safety.metered``); zipfile itself never returns more than the
declared size.

A zip whose central directory cannot be read is salvaged from its local
headers (``zip_salvage``), and reported damaged after what could be read.
"""

from __future__ import annotations

import lzma
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from pipeline.migration.entries import (
    CORRUPT,
    DECOMPRESSION_BOMB,
    ENCRYPTED,
    LINK,
    SPECIAL_FILE,
    TOO_LARGE,
    UNREADABLE,
    UNSAFE_PATH,
    ArchiveDamaged,
    Entry,
    EntryRefused,
    Refusal,
    refused,
)
from pipeline.migration.legacy_names import decode_zip_name, iter_extra_fields
from pipeline.migration.safety import (
    ArchiveMeter,
    metered,
    over_budget,
    safe_member_path,
    through_link,
)
from pipeline.migration.streams import read_chunks

SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                     zipfile.ZIP_LZMA}
EXTENDED_TIMESTAMP = 0x5455
NTFS_TIMES = 0x000A
# Windows FILETIME counts 100 ns steps from 1601-01-01.
FILETIME_UNIX_EPOCH = 116_444_736_000_000_000
ENCRYPTED_FLAG = 0x1


class ZipPlace:
    """Where a zip sits: the path and key its members hang under, and its meter."""

    def __init__(self, prefix: str, key_prefix: str, depth: int, meter: ArchiveMeter,
                 size: int):
        self.prefix = prefix
        self.key_prefix = key_prefix
        self.depth = depth
        self.meter = meter
        self.size = size
        self.links: set[str] = set()

    def key(self, index: int | str) -> str:
        return f"{self.key_prefix}!{index}"

    def display(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path


def zip_entries(source: BinaryIO, place: ZipPlace) -> Iterator[Entry]:
    """The members of the zip in ``source`` (seekable), in central directory order."""
    from pipeline.migration.sources.zip_salvage import salvage_entries

    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError,
            EOFError) as error:
        count = yield from salvage_entries(source, place)
        raise ArchiveDamaged(f"the zip directory is unreadable ({error}); "
                             f"read {count} entries from the local headers") from error
    with archive:
        for index, info in enumerate(archive.infolist()):
            if _is_folder(info):
                continue
            # Lazily: the budget left is known once the members before were read.
            yield _member_entry(archive, index, info, place)


def _member_entry(archive: zipfile.ZipFile, index: int, info: zipfile.ZipInfo,
                  place: ZipPlace) -> Entry:
    name = decode_zip_name(info)
    key, display = place.key(index), place.display(name)
    facts = {"size": info.file_size, "modified_at": zip_mtime(info),
             "compressed_size": info.compress_size}
    try:
        path = safe_member_path(name)
    except EntryRefused as error:
        return refused(key, display, place.depth, error.code, error.message, **facts)

    display = place.display(path)
    refusal = member_refusal(path, _unix_mode(info), info.flag_bits, info.compress_type,
                             info.file_size, info.compress_size, place)
    if refusal is not None:
        return Entry(key=key, path=display, depth=place.depth, refusal=refusal, **facts)
    return Entry(key=key, path=display, depth=place.depth,
                 opener=lambda: metered(_read_member(archive, info), place.meter,
                                        info.compress_size),
                 **facts)


def member_refusal(path: str, mode: int, flags: int, method: int, size: int,
                   compressed: int, place: ZipPlace) -> Refusal | None:
    """Why a member cannot come in, judged from its header alone; None if it may."""
    limits = place.meter.limits
    if stat.S_ISLNK(mode):
        place.links.add(path)
        return Refusal(LINK, "symbolic link")
    # Many tools write permission bits only (0o644); only a stated type counts.
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return Refusal(SPECIAL_FILE, "not a regular file")
    via = through_link(path, place.links)
    if via is not None:
        return Refusal(UNSAFE_PATH, f"the path passes through the link {via}")
    if flags & ENCRYPTED_FLAG:
        return Refusal(ENCRYPTED, "encrypted; no password is known")
    if method not in SUPPORTED_METHODS:
        return Refusal(UNREADABLE, f"compression method {method} is not supported")
    if size > limits.max_file_size:
        return Refusal(TOO_LARGE,
                       f"{size} bytes is over the limit of {limits.max_file_size}")
    if limits.is_bomb(size, max(compressed, 1)):
        return Refusal(DECOMPRESSION_BOMB, f"declares {size} bytes from {compressed} "
                                           f"(over {limits.max_ratio:g}:1)")
    past_budget = over_budget(size, place.meter)
    if past_budget is not None:
        return Refusal(DECOMPRESSION_BOMB, past_budget)
    return None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    try:
        with archive.open(info) as member:
            yield from read_chunks(member)
    except NotImplementedError as error:
        raise EntryRefused(UNREADABLE, f"cannot read: {error}") from error
    except RuntimeError as error:  # zipfile's way of asking for a password
        raise EntryRefused(ENCRYPTED, f"cannot read: {error}") from error
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as error:
        raise EntryRefused(CORRUPT, f"damaged member: {error}") from error


def _is_folder(info: zipfile.ZipInfo) -> bool:
    return info.is_dir() or stat.S_ISDIR(_unix_mode(info))


def _unix_mode(info: zipfile.ZipInfo) -> int:
    unix = 3
    return info.external_attr >> 16 if info.create_system == unix else 0


def zip_mtime(info: zipfile.ZipInfo) -> datetime | None:
    """The member's modification time: UTC from an extra field when there is one.

    The basic DOS time has no zone; without an extra field it is taken as UTC.
    """
    exact = extra_mtime(info.extra)
    if exact is not None:
        return exact
    try:
        return datetime(*info.date_time, tzinfo=UTC)
    except ValueError:
        return None


def extra_mtime(extra: bytes) -> datetime | None:
    for field_id, data in iter_extra_fields(extra):
        try:
            if field_id == EXTENDED_TIMESTAMP and len(data) >= 5 and data[0] & 1:
                return datetime.fromtimestamp(struct.unpack("<i", data[1:5])[0], UTC)
            if field_id == NTFS_TIMES:
                return _ntfs_mtime(data)
        except (ValueError, OverflowError, OSError):
            continue
    return None


def _ntfs_mtime(data: bytes) -> datetime | None:
    offset = 4  # reserved
    while offset + 4 <= len(data):
        tag, size = struct.unpack("<HH", data[offset:offset + 4])
        if tag == 1 and size >= 8:
            (filetime,) = struct.unpack("<Q", data[offset + 4:offset + 12])
            return datetime.fromtimestamp((filetime - FILETIME_UNIX_EPOCH) / 10**7, UTC)
        offset += 4 + size
    return None
