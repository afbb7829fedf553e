"""The spool: where a claimed file waits, in Sluice's custody, until it is stored.

The pipeline only talks to the ``Spool`` interface, so that workers on other hosts
can reach a claimed file. ``FolderSpool`` is a folder, local or on a share that
every host mounts. A file enters the spool in one of two ways:

* ``claim``: an atomic rename out of the watched inbox (same filesystem), so two
  watchers can never take the same file. The watcher writes the document's row
  before the rename, so a file in the spool always has its row.
* ``receive``: a stream (HTTP upload, ``sluice ingest``, migration) written to a
  temporary name, hashed on the way, then renamed into place. ``open_incoming``
  does the same piece by piece, for a caller that receives the stream in pieces.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.directio import StagedWriter
from pipeline.errors import TooLarge, TransientError

log = logging.getLogger(__name__)

INCOMING = ".incoming"
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# The most buffers one writev takes (Linux and the BSDs: 1024).
_IOV_MAX = 1024
# A stream whose first piece is this large goes through a StagedWriter: hashed
# while it is written, past the page cache where possible (pipeline.directio).
LARGE_STREAM_BYTES = 1024 * 1024


class ClaimLost(Exception):
    """Another watcher took the file first (or it vanished)."""


class SpoolFull(TransientError):
    """No space left where the spool is; the source stays where it was."""


class SpoolMisplaced(Exception):
    """The spool is not on the inbox's filesystem, so a claim cannot be atomic."""


@dataclass(frozen=True)
class SpooledFile:
    ref: str
    size: int
    sha256: str


class IncomingFile:
    """A stream on its way into the spool, hashed as it is written.

    It waits under ``.incoming`` until ``commit`` renames it into place; ``abort``
    removes it from wherever it got to. The bytes are written exactly once.
    """

    def __init__(self, root: Path, document_id: uuid.UUID, max_size: int):
        self.document_id = document_id
        self.ref = str(document_id)
        self.path = root / INCOMING / f"{self.ref}.part"
        self._final = root / self.ref
        self._max_size = max_size
        self._digest = hashlib.sha256()
        with _full_spool_is_transient(root):
            # A bare descriptor: the pieces are large, a buffer would only copy them.
            self._fd: int | None = os.open(self.path, _CREATE_FLAGS, 0o666)
        self._staged: StagedWriter | None = None
        self._spooled: SpooledFile | None = None
        self._committed = False
        self.size = 0

    def write(self, chunk: bytes | memoryview) -> None:
        """Append ``chunk``; raise TooLarge past the limit (the caller aborts)."""
        self.writelines((chunk,))

    def writelines(self, chunks: Sequence[bytes | memoryview]) -> None:
        """Append the chunks in order; raise TooLarge past the limit (the caller aborts).

        Takes bytes or memoryviews of them, so that a caller can pass slices of
        what it received without copying them first. A large file may keep its
        last few MB staged until ``finish``.
        """
        batch_bytes = sum(len(chunk) for chunk in chunks)
        self.size += batch_bytes
        if self.size > self._max_size:
            raise TooLarge(f"larger than the limit of {self._max_size} bytes")
        if self.size == batch_bytes >= LARGE_STREAM_BYTES:
            # A first piece this large announces a large file (pipeline.directio).
            self._staged = StagedWriter(self._fd, self._digest)
        with _full_spool_is_transient(self._final.parent):
            if self._staged is not None:
                self._staged.write(chunks)
                return
            for chunk in chunks:
                self._digest.update(chunk)
            _write_all(self._fd, chunks)

    def finish(self) -> SpooledFile:
        """Make the bytes durable and report size and hash; the file is not in place yet."""
        if self._spooled is None:
            with _full_spool_is_transient(self._final.parent):
                if self._staged is not None:
                    self._staged.finish()
                    self._staged = None
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._spooled = SpooledFile(self.ref, self.size, self._digest.hexdigest())
        return self._spooled

    def commit(self) -> SpooledFile:
        """Put the finished file in place under its ref, where workers look for it."""
        spooled = self.finish()
        os.rename(self.path, self._final)
        self._committed = True
        return spooled

    def abort(self) -> None:
        """Leave nothing behind: neither the partial file nor a committed one."""
        if self._staged is not None:
            self._staged.close()
            self._staged = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
        if self._committed:
            self._final.unlink(missing_ok=True)
            self._committed = False


def _write_all(fd: int, chunks: Sequence[bytes | memoryview]) -> None:
    # writev may write less than asked (a signal, a full disk on the way): go on
    # from where it stopped until every byte is written or it raises.
    pending = [memoryview(chunk).cast("B") for chunk in chunks]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if written:
            pending[0] = pending[0][written:]


@contextmanager
def _full_spool_is_transient(root: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpoolFull(f"no space left in the spool {root}") from error
        raise


class Spool(Protocol):
    def claim(self, source: Path, document_id: uuid.UUID) -> str: ...
    def unclaim(self, ref: str, source: Path) -> bool: ...
    def receive(self, document_id: uuid.UUID, chunks: Iterable[bytes],
                max_size: int) -> SpooledFile: ...
    def open_incoming(self, document_id: uuid.UUID, max_size: int) -> IncomingFile: ...
    def discard_incoming(self, document_id: uuid.UUID) -> None: ...
    def local_path(self, ref: str) -> Path: ...
    def exists(self, ref: str) -> bool: ...
    def remove(self, ref: str) -> None: ...
    def move_out(self, ref: str, destination: Path) -> bool: ...
    def stale_incoming(self, older_than_seconds: float) -> Iterator[Path]: ...
    def iter_refs(self) -> Iterator[tuple[str, float]]: ...


class FolderSpool:
    def __init__(self, root: Path):
        self.root = root.resolve()
        (self.root / INCOMING).mkdir(parents=True, exist_ok=True)

    def ensure_same_filesystem(self, inbox: Path) -> None:
        if os.stat(inbox).st_dev != os.stat(self.root).st_dev:
            raise SpoolMisplaced(
                f"the spool {self.root} is not on the same filesystem as the inbox "
                f"{inbox}; set SLUICE_SPOOL to a folder beside the inbox"
            )

    def claim(self, source: Path, document_id: uuid.UUID) -> str:
        """Move ``source`` into the spool atomically; raise ClaimLost if it is gone."""
        ref = str(document_id)
        try:
            os.rename(source, self.root / ref)
        except FileNotFoundError as error:
            raise ClaimLost(str(source)) from error
        except OSError as error:
            if error.errno == errno.EXDEV:
                raise SpoolMisplaced(str(error)) from error
            raise
        return ref

    def unclaim(self, ref: str, source: Path) -> bool:
        """Put a file claimed a moment ago back where it was; False if that name is taken.

        A hard link never replaces an existing name, so a new file that arrived
        under the same name meanwhile is left alone; the spool's name then goes.
        """
        claimed = self.root / ref
        try:
            os.link(claimed, source, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError:
            # No hard links here: check, then rename (a window of microseconds).
            if os.path.lexists(source):
                return False
            os.rename(claimed, source)
            return True
        os.unlink(claimed)
        return True

    def receive(
        self, document_id: uuid.UUID, chunks: Iterable[bytes], max_size: int
    ) -> SpooledFile:
        """Write a stream into the spool, hashing it; refuse it past ``max_size``."""
        incoming = self.open_incoming(document_id, max_size)
        try:
            for chunk in chunks:
                incoming.write(chunk)
            return incoming.commit()
        except BaseException:
            incoming.abort()
            raise

    def discard_incoming(self, document_id: uuid.UUID) -> None:
        """Drop a partial stream a killed process left for this id, if there is one."""
        (self.root / INCOMING / f"{document_id}.part").unlink(missing_ok=True)

    def open_incoming(self, document_id: uuid.UUID, max_size: int) -> IncomingFile:
        """Start writing a stream piece by piece (an HTTP upload as it arrives)."""
        return IncomingFile(self.root, document_id, max_size)

    def local_path(self, ref: str) -> Path:
        return self.root / ref

    def exists(self, ref: str) -> bool:
        return (self.root / ref).exists()

    def remove(self, ref: str) -> None:
        (self.root / ref).unlink(missing_ok=True)

    def move_out(self, ref: str, destination: Path) -> bool:
        """Move a spooled file out (to quarantine); False when it is not here."""
        source = self.root / ref
        if not source.exists():
            return False
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, destination)
        return True

    def iter_refs(self) -> Iterator[tuple[str, float]]:
        """Every spooled file as (ref, mtime); partial writes are not included."""
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    yield entry.name, entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue

    def stale_incoming(self, older_than_seconds: float) -> Iterator[Path]:
        """Partial writes left by a crashed upload; nobody was told they arrived."""
        limit = time.time() - older_than_seconds
        for partial in (self.root / INCOMING).glob("*.part"):
            try:
                if partial.stat().st_mtime < limit:
                    yield partial
            except FileNotFoundError:
                continue
