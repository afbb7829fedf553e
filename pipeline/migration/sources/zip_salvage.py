"""Reading a zip whose central directory is lost, from its local headers, in order.

A zip cut short (an interrupted copy or download) loses its directory, which
sits at the end; its members are still there, each behind a local header.
Stored and deflated members are read, CRC-checked, one after the other, until a
header is missing or a member cannot be delimited. Declared sizes are never
trusted for allocation: data is read in chunks, up to what the file holds.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pipeline.migration.entries import (
    CORRUPT,
    DECOMPRESSION_BOMB,
    ArchiveStopped,
    Entry,
    EntryRefused,
    refused,
)
from pipeline.migration.legacy_names import decode_legacy
from pipeline.migration.safety import safe_member_path
from pipeline.migration.sources.zipped import (
    ZipPlace,
    extra_mtime,
    member_refusal,
)
from pipeline.migration.streams import CHUNK_BYTES, STEP_OUTPUT_BYTES

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
LOCAL_SIGNATURE = b"PK\x03\x04"
DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
UTF8_FLAG = 0x800
STREAMED_FLAG = 0x8
STORED, DEFLATED = 0, 8


class _Member:
    """One member's data: where it starts, and where it ends once known."""

    def __init__(self, source: BinaryIO, place: ZipPlace, start: int, header: tuple):
        (_, _, self.flags, self.method, _, _, self.crc, self.compressed, self.size,
         _, _) = header
        self.source, self.place, self.start = source, place, start
        self.streamed = bool(self.flags & STREAMED_FLAG)
        self.end: int | None = None if self.streamed else start + self.compressed
        self.damaged = False
        self.read = 0  # compressed bytes read so far

    def chunks(self) -> Iterator[bytes]:
        """The member's bytes, counted by the archive's meter, checked at the end."""
        crc = size = 0
        self.read = 0
        limits = self.place.meter.limits
        reader = self._stored() if self.method == STORED else self._inflated()
        for chunk in reader:
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
            if limits.is_bomb(size, max(self.read, 1)):
                message = (f"expanded past {size} bytes from {self.read} compressed "
                           f"(over {limits.max_ratio:g}:1)")
                # Without a stated size, what follows lies behind the bomb.
                if self.streamed:
                    raise ArchiveStopped(DECOMPRESSION_BOMB, message)
                raise EntryRefused(DECOMPRESSION_BOMB, message)
            self.place.meter.add(len(chunk))
            yield chunk
        if not self.streamed and (size != self.size or crc != self.crc):
            self.damaged = True
            raise EntryRefused(CORRUPT, f"damaged member: {size} bytes read, CRC "
                                        f"{'ok' if crc == self.crc else 'mismatch'}")

    def skip(self) -> None:
        if self.end is None:
            for _ in self.chunks():
                pass

    def _stored(self) -> Iterator[bytes]:
        self.source.seek(self.start)
        left = self.compressed
        while left:
            chunk = self.source.read(min(left, CHUNK_BYTES))
            if not chunk:
                self.damaged = True
                raise EntryRefused(CORRUPT, f"truncated: {self.compressed - left} of "
                                            f"{self.compressed} bytes present")
            left -= len(chunk)
            self.read += len(chunk)
            yield chunk

    def _inflated(self) -> Iterator[bytes]:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        position = self.start
        left = None if self.streamed else self.compressed
        while not inflater.eof:
            if inflater.unconsumed_tail:
                data = inflater.unconsumed_tail
            else:
                self.source.seek(position)
                wanted = CHUNK_BYTES if left is None else min(left, CHUNK_BYTES)
                data = self.source.read(wanted)
                if not data:
                    self.damaged = True
                    raise EntryRefused(CORRUPT, "truncated deflate data")
                position += len(data)
                self.read += len(data)
                if left is not None:
                    left -= len(data)
            try:
                yield inflater.decompress(data, STEP_OUTPUT_BYTES)
            except zlib.error as error:
                self.damaged = True
                raise EntryRefused(CORRUPT, f"damaged deflate data: {error}") from error
        if self.streamed:
            self.end = self._after_descriptor(position - len(inflater.unused_data))

    def _after_descriptor(self, data_end: int) -> int:
        self.source.seek(data_end)
        signature = self.source.read(4)
        return data_end + (16 if signature == DESCRIPTOR_SIGNATURE else 12)


def salvage_entries(source: BinaryIO, place: ZipPlace) -> Iterator[Entry]:
    """Entries from the local headers, folders left out; returns how many it read.

    Keys number the headers (folders too), as ``zip_entries`` numbers members.
    """
    offset = count = headers = 0
    while True:
        source.seek(offset)
        raw = source.read(LOCAL_HEADER.size)
        if len(raw) < LOCAL_HEADER.size or not raw.startswith(LOCAL_SIGNATURE):
            return count
        header = LOCAL_HEADER.unpack(raw)
        name_length, extra_length = header[9], header[10]
        name_raw, extra = source.read(name_length), source.read(extra_length)
        member = _Member(source, place, offset + LOCAL_HEADER.size + name_length
                         + extra_length, header)
        if member.streamed and member.method != DEFLATED:
            return count  # its end cannot be found without the directory

        if not _is_folder(name_raw):
            yield _entry(member, name_raw, extra, f"s{headers}")
            count += 1
        headers += 1
        if member.damaged:
            return count
        try:
            member.skip()
        except EntryRefused:
            return count
        offset = member.end


def _is_folder(name_raw: bytes) -> bool:
    """A folder's header, as ``zipfile`` tells one: its name ends in a slash (or a
    backslash, which old Windows tools wrote). Local headers carry no attributes."""
    return name_raw.endswith((b"/", b"\\"))


def _entry(member: _Member, name_raw: bytes, extra: bytes, index: str) -> Entry:
    place = member.place
    name = (name_raw.decode("utf-8", "replace") if member.flags & UTF8_FLAG
            else decode_legacy(name_raw, fallback="cp437"))
    key, display = place.key(index), place.display(name)
    facts = {"size": member.size, "modified_at": extra_mtime(extra),
             "compressed_size": member.compressed}
    try:
        path = safe_member_path(name)
    except EntryRefused as error:
        return refused(key, display, place.depth, error.code, error.message, **facts)
    refusal = member_refusal(path, 0, member.flags, member.method, member.size,
                             member.compressed, place)
    return Entry(key=key, path=place.display(path), depth=place.depth, refusal=refusal,
                 opener=None if refusal else member.chunks, **facts)
