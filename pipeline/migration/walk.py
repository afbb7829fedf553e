"""The walk over a source: every entry visited once, archives inside opened in place.

The walk decides what each entry is and hands it to a ``Sink``, which decides
what to do with it (a real run spools it, a dry run measures it):

    done?      the sink already has it (a resumed run): skip, unread
    skipped?   ignored names and ``--exclude``: recorded, unread
    refused?   the source said so from the header (names, links, limits)
    archive?   the first bytes say zip or tar: opened and walked, depth-limited;
               a zip is held first (``Scratch``) to tell a docx from an archive,
               and one that is a copy of an archive around it is not opened
    file       ``--include`` permitting, handed to the sink as a stream

Reading errors refuse the entry; a damaged or bombing archive refuses the
archive after what was read; a spent budget stops the outermost archive.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Protocol

from pipeline.detect import HEAD_BYTES, detect
from pipeline.errors import CorruptFile, PermanentError
from pipeline.migration.entries import (
    CORRUPT,
    EXCLUDED,
    NESTED_TOO_DEEP,
    RECURSIVE_ARCHIVE,
    UNSAFE_PATH,
    ArchiveDamaged,
    ArchiveStopped,
    Entry,
)
from pipeline.migration.options import MigrationOptions
from pipeline.migration.safety import ArchiveMeter, ExpansionBudget, Limits
from pipeline.migration.scratch import Scratch
from pipeline.migration.sources.folder import folder_entries
from pipeline.migration.sources.kinds import archive_kind
from pipeline.migration.sources.tarred import TarPlace, tar_entries
from pipeline.migration.sources.zipped import ZipPlace, zip_entries
from pipeline.migration.streams import ChunkReader, EntryStream, read_chunks

log = logging.getLogger(__name__)

SOURCE_ARCHIVE_KEY = "a:"
# The source archive's own line in the report: its members' paths start inside it.
SOURCE_ARCHIVE_PATH = "."
PLAIN_ZIP = "application/zip"


class NotAnArchive(ValueError):
    """The source is a file, but not a zip or tar archive."""


class Sink(Protocol):
    def is_done(self, entry: Entry) -> bool: ...
    def skip(self, entry: Entry, outcome: str, reason: str) -> None: ...
    def refuse(self, entry: Entry, code: str, message: str) -> None: ...
    def take(self, entry: Entry, stream: EntryStream) -> None: ...
    def unpacked(self, entry: Entry) -> None: ...


@dataclass
class Ancestor:
    """An archive around the current one: a zip equal to it is a loop (a quine)."""

    size: int | None
    digest: Callable[[], str]

    @cached_property
    def sha256(self) -> str:
        return self.digest()


@dataclass
class Tree:
    """The outermost archive and the archives inside it: one expansion budget."""

    budget: ExpansionBudget
    ancestors: tuple[Ancestor, ...] = ()

    def inside(self, ancestor: Ancestor) -> Tree:
        return Tree(self.budget, (*self.ancestors, ancestor))


def source_kind(source: Path) -> str | None:
    """"folder", an archive kind, or None for a file that is no archive.

    A FIFO, socket or device is None without being opened: opening a FIFO waits
    for a writer that may never come.
    """
    if source.is_dir():
        return "folder"
    if not source.is_file():
        return None
    with source.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        kind = archive_kind(head)
        if kind == "zip" and _zip_type(handle, head, source.name) != PLAIN_ZIP:
            return None
    return kind


class Walk:
    def __init__(self, sink: Sink, options: MigrationOptions, limits: Limits,
                 spool_root: Path):
        self.sink = sink
        self.options = options
        self.limits = limits
        self.spool_root = spool_root
        self.source_handle: BinaryIO | None = None

    def run(self, source: Path) -> None:
        if source.is_dir():
            self._visit_all(folder_entries(source), tree=None)
            return
        kind = source_kind(source)
        if kind is None:
            raise NotAnArchive(f"{source} is neither a folder nor a zip or tar archive")
        self._source_archive(source, kind)

    def _source_archive(self, source: Path, kind: str) -> None:
        info = source.stat()
        entry = Entry(key=SOURCE_ARCHIVE_KEY, path=SOURCE_ARCHIVE_PATH, depth=0,
                      size=info.st_size,
                      modified_at=datetime.fromtimestamp(info.st_mtime, UTC))
        if self.sink.is_done(entry):
            return
        tree = Tree(ExpansionBudget(self.limits))
        ancestor = Ancestor(info.st_size, lambda: _file_sha256(source))
        with source.open("rb") as handle:
            self.source_handle = handle
            self._walk_archive(entry, kind, handle, info.st_size, tree.inside(ancestor),
                               prefix="", outermost=True)

    def _visit_all(self, entries: Iterable[Entry], tree: Tree | None) -> None:
        for entry in entries:
            self._visit(entry, tree)

    def _visit(self, entry: Entry, tree: Tree | None) -> None:
        if self.sink.is_done(entry):
            return
        # A name made to escape is refused whatever else it matches ("../x" is hidden).
        skipped = None if _is_unsafe(entry) else self.options.skip_reason(entry.path)
        if skipped is not None:
            self.sink.skip(entry, *skipped)
            return
        if entry.refusal is not None:
            self.sink.refuse(entry, entry.refusal.code, entry.refusal.message)
            return

        try:
            stream = EntryStream.peek(entry.chunks())
            kind = archive_kind(stream.head)
        except PermanentError as error:
            self._refuse_read(entry, error)
            return
        if kind == "zip":
            self._visit_zip(entry, stream, tree)
        elif kind is not None:
            self._open_nested(entry, kind, ChunkReader(stream.chunks()), None, tree)
        else:
            self._take(entry, stream)

    def _visit_zip(self, entry: Entry, stream: EntryStream, tree: Tree | None) -> None:
        """Hold the zip whole, then open it, or take it if it is a document (docx)."""
        with Scratch(self.spool_root) as held:
            try:
                held.fill(stream.chunks())
            except PermanentError as error:
                self._refuse_read(entry, error)
                return
            mime_type = _zip_type(held.open(), stream.head, entry.name)
            if mime_type != PLAIN_ZIP:
                document = EntryStream.peek(held.chunks())
                document.mime_hint = mime_type
                self._take(entry, document)
                return
            if tree is not None and any(a.size == held.size and a.sha256 == held.sha256
                                        for a in tree.ancestors):
                self.sink.refuse(
                    entry, RECURSIVE_ARCHIVE,
                    "the archive contains a copy of an archive it is inside")
                return
            ancestor = Ancestor(held.size, lambda: held.sha256)
            self._open_nested(entry, "zip", held.open(), ancestor, tree, size=held.size)

    def _open_nested(self, entry: Entry, kind: str, source: BinaryIO | ChunkReader,
                     ancestor: Ancestor | None, tree: Tree | None,
                     size: int | None = None) -> None:
        if entry.depth + 1 > self.limits.max_depth:
            self.sink.refuse(entry, NESTED_TOO_DEEP,
                             f"an archive {entry.depth + 1} levels deep; the limit is "
                             f"{self.limits.max_depth}")
            return
        outermost = tree is None
        tree = tree or Tree(ExpansionBudget(self.limits))
        if ancestor is not None:
            tree = tree.inside(ancestor)
        self._walk_archive(entry, kind, source, size, tree, prefix=entry.path,
                           outermost=outermost)

    def _walk_archive(self, entry: Entry, kind: str, source: BinaryIO | ChunkReader,
                      size: int | None, tree: Tree, prefix: str,
                      outermost: bool) -> None:
        """Visit the archive's members; then record it unpacked, or why it stopped."""
        name = "the archive" if entry.path == SOURCE_ARCHIVE_PATH else entry.path
        meter = ArchiveMeter(name, tree.budget)
        depth = entry.depth + 1
        try:
            if kind == "zip":
                members = zip_entries(source, ZipPlace(prefix, entry.key, depth, meter,
                                                       size or 0))
            else:
                place = TarPlace(prefix, entry.key, depth, meter)
                members = tar_entries(source, kind, place)
            self._visit_all(members, tree)
        except ArchiveStopped as stop:
            self.sink.refuse(entry, stop.code, stop.message)
            if stop.whole_tree and not outermost:
                raise
            return
        except ArchiveDamaged as damage:
            self.sink.refuse(entry, CORRUPT, damage.message)
            return
        self.sink.unpacked(entry)

    def _take(self, entry: Entry, stream: EntryStream) -> None:
        if not self.options.includes(entry.path):
            self.sink.skip(entry, EXCLUDED, "not matched by --include")
            return
        try:
            self.sink.take(entry, stream)
        except PermanentError as error:
            self._refuse_read(entry, error)

    def _refuse_read(self, entry: Entry, error: PermanentError) -> None:
        """Refuse an entry that failed while read; its archive stops if it broke."""
        self.sink.refuse(entry, error.code, error.message)
        if isinstance(error, ArchiveStopped | ArchiveDamaged):
            raise error


def _is_unsafe(entry: Entry) -> bool:
    return entry.refusal is not None and entry.refusal.code == UNSAFE_PATH


def _zip_type(handle: BinaryIO, head: bytes, name: str) -> str:
    """What pipeline.detect calls this zip: a plain zip, or a document (docx, epub).

    detect looks inside through zipfile, which takes an open file as well as a path.
    """
    try:
        return detect(handle, head[:HEAD_BYTES], name).mime_type  # type: ignore[arg-type]
    except CorruptFile:
        # No readable directory: salvaged as an archive, reported as damaged.
        return PLAIN_ZIP


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in read_chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()
