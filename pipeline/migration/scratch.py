"""Holding an entry that must be looked into before it is taken (a zip in an archive).

A zip is read from its end (the central directory), so a zip inside an archive
has to be held whole: in memory up to ``MEMORY_BYTES``, beyond that in the
spool's ``.incoming`` folder, the one place besides the spool itself where the
migration writes. The file is removed as soon as the entry is done; one left by
a crash is a ``.part`` file that the sweep removes.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from pipeline.migration.streams import read_chunks
from pipeline.spool import INCOMING

MEMORY_BYTES = 8 * 1024 * 1024


class Scratch:
    def __init__(self, spool_root: Path):
        self._folder = spool_root / INCOMING
        self._handle: BinaryIO = io.BytesIO()
        self._path: Path | None = None
        self._digest = hashlib.sha256()
        self.size = 0

    def fill(self, chunks: Iterable[bytes]) -> Scratch:
        for chunk in chunks:
            self._write(chunk)
        self._handle.flush()
        return self

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def open(self) -> BinaryIO:
        """The held bytes, from the start (the same handle each time)."""
        self._handle.seek(0)
        return self._handle

    def chunks(self) -> Iterator[bytes]:
        yield from read_chunks(self.open())

    def close(self) -> None:
        self._handle.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _write(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)
        if self._path is None and self.size > MEMORY_BYTES:
            self._move_to_disk()
        self._handle.write(chunk)

    def _move_to_disk(self) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        self._path = self._folder / f"migrate-{uuid.uuid4()}.part"
        held = self._handle
        self._handle = self._path.open("w+b")
        self._handle.write(held.getvalue())
        held.close()
