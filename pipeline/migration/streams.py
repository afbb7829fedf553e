"""Readers over an entry's bytes: chunked, peeked, counted, decompressed, metered."""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from pipeline.detect import HEAD_BYTES
from pipeline.migration.entries import ArchiveDamaged
from pipeline.migration.safety import ArchiveMeter

CHUNK_BYTES = 1024 * 1024
# Decompressed bytes per step: small enough that a bomb is caught within one
# step of the limit, large enough to keep the per-call overhead low.
STEP_OUTPUT_BYTES = 256 * 1024
# Compressed bytes read at a time: small, so that the compressed bytes a member
# of a tar is charged with (read while it expands) are close to its own.
RAW_READ_BYTES = 64 * 1024

MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00"}


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_chunks(source: Readable, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    while chunk := source.read(size):
        yield chunk


class EntryStream:
    """An entry's bytes, with the first ones already read to tell what it is."""

    def __init__(self, head: bytes, rest: Iterator[bytes]):
        self.head = head
        self.rest = rest
        # The type the walk found while looking inside (a zip that is a docx).
        self.mime_hint: str | None = None

    @classmethod
    def peek(cls, chunks: Iterator[bytes], head_bytes: int = HEAD_BYTES) -> EntryStream:
        buffered, size = [], 0
        for chunk in chunks:
            buffered.append(chunk)
            size += len(chunk)
            if size >= head_bytes:
                break
        return cls(b"".join(buffered), chunks)

    def chunks(self) -> Iterator[bytes]:
        if self.head:
            yield self.head
        yield from self.rest


class ChunkReader(io.RawIOBase):
    """A file object over a chunk iterator, for readers that want ``read(n)``."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = memoryview(next(self._chunks, b""))
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class CountingReader:
    """Counts the bytes read through it: the compressed side of a ratio."""

    def __init__(self, source: Readable):
        self.source = source
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data


class DecompressingReader(io.RawIOBase):
    """gzip, bzip2 or xz, decompressed step by step, every step counted by ``meter``.

    Concatenated members (``cat a.gz b.gz``) are read on; zero padding at the end
    (tape blocks) is ignored; a stream that ends inside a member is damaged.
    """

    def __init__(self, source: BinaryIO | Readable, kind: str, meter: ArchiveMeter):
        self.raw = CountingReader(source)
        self.kind = kind
        self.meter = meter
        self._decompressor = _new_decompressor(kind)
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            self._pending = memoryview(self._step())
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _step(self) -> bytes:
        decompressor = self._decompressor
        if decompressor.eof:
            self._next_member(decompressor.unused_data)
            return b""
        data = b""
        if decompressor.needs_input:
            data = self.raw.read(RAW_READ_BYTES)
            if not data:
                raise ArchiveDamaged(f"the {self.kind} stream ends early (truncated)")
        try:
            out = decompressor.decompress(data, STEP_OUTPUT_BYTES)
        except (zlib.error, OSError, lzma.LZMAError, EOFError) as error:
            raise ArchiveDamaged(f"damaged {self.kind} data: {error}") from error
        self.meter.add(len(out))
        return out

    def _next_member(self, rest: bytes) -> None:
        rest = rest or self.raw.read(CHUNK_BYTES)
        while rest and not rest.strip(b"\x00"):
            rest = self.raw.read(CHUNK_BYTES)
        rest = rest.lstrip(b"\x00")
        if not rest.startswith(MAGIC[self.kind]):
            self._done = True
            return
        self._decompressor = _new_decompressor(self.kind)
        self._decompressor.prime(rest)


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    @property
    def needs_input(self) -> bool: ...
    def decompress(self, data: bytes, max_length: int) -> bytes: ...
    def prime(self, data: bytes) -> None: ...


class _Primable:
    """What both decompressor shapes share: a chunk primed back, eof and the unused tail."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._primed = b""

    @property
    def eof(self) -> bool:
        return self._inner.eof

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data

    def prime(self, data: bytes) -> None:
        self._primed = data


class _Zlib(_Primable):
    """zlib's streaming API, shaped like bz2's and lzma's (``needs_input``)."""

    def __init__(self) -> None:
        super().__init__(zlib.decompressobj(wbits=16 + zlib.MAX_WBITS))

    @property
    def needs_input(self) -> bool:
        return not self._inner.unconsumed_tail and not self._primed

    def decompress(self, data: bytes, max_length: int) -> bytes:
        source = self._primed or self._inner.unconsumed_tail or data
        self._primed = b""
        return self._inner.decompress(source, max_length)


class _Buffered(_Primable):
    """bz2 or lzma, whose decompressors take unread input back themselves."""

    @property
    def needs_input(self) -> bool:
        return self._inner.needs_input and not self._primed

    def decompress(self, data: bytes, max_length: int) -> bytes:
        source = self._primed or data
        self._primed = b""
        return self._inner.decompress(source, max_length)


def _new_decompressor(kind: str) -> _Decompressor:
    if kind == "gzip":
        return _Zlib()
    if kind == "bzip2":
        return _Buffered(bz2.BZ2Decompressor())
    if kind == "xz":
        return _Buffered(lzma.LZMADecompressor())
    raise ValueError(f"no decompressor for {kind}")


def decompress_head(kind: str, head: bytes, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a compressed head; b"" if unreadable."""
    try:
        decompressor = _new_decompressor(kind)
        return decompressor.decompress(head, size)
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
        return b""
