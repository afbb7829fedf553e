"""What a migration source yields: one entry per file, read only when asked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pipeline.errors import PermanentError

# Codes of INTERFACE.md, reused where they fit.
CORRUPT = "corrupt"
UNREADABLE = "unreadable"
TOO_LARGE = "too_large"
DECOMPRESSION_BOMB = "decompression_bomb"
# Codes that only a migration gives: the entry never became a document.
UNSAFE_PATH = "unsafe_path"
LINK = "link"
SPECIAL_FILE = "special_file"
ENCRYPTED = "encrypted"
NESTED_TOO_DEEP = "nested_too_deep"
RECURSIVE_ARCHIVE = "recursive_archive"

# Outcomes in the run ledger; a document's own status supersedes ``received``.
RECEIVED = "received"
REFUSED = "refused"
EXCLUDED = "excluded"
IGNORED = "ignored"
UNPACKED = "unpacked"


class EntryRefused(PermanentError):
    """One entry cannot come in; its siblings go on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ArchiveStopped(PermanentError):
    """An archive must stop here: a bomb, or the expansion budget is spent.

    ``whole_tree`` stops the outermost archive too (the budget is shared by
    every archive inside it); otherwise only the archive that tripped stops.
    """

    def __init__(self, code: str, message: str, whole_tree: bool = False):
        super().__init__(message)
        self.code = code
        self.whole_tree = whole_tree


class ArchiveDamaged(PermanentError):
    """The archive's structure broke; what came before was read."""

    code = CORRUPT


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


@dataclass
class Entry:
    """One file (or a refused name) of a source.

    ``key`` is the entry's place in the source, stable across runs and unique in
    a run (archive members are keyed by position, so two members with the same
    name stay two entries). ``path`` is what users see: relative, with archives
    inside archives joined by "/".
    """

    key: str
    path: str
    depth: int
    size: int | None = None
    modified_at: datetime | None = None
    refusal: Refusal | None = None
    opener: Callable[[], Iterator[bytes]] | None = None
    compressed_size: int | None = None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def chunks(self) -> Iterator[bytes]:
        if self.opener is None:
            raise EntryRefused(UNREADABLE, "this entry has no content to read")
        return self.opener()


def refused(key: str, path: str, depth: int, code: str, message: str,
            **facts: object) -> Entry:
    return Entry(key=key, path=path, depth=depth, refusal=Refusal(code, message),
                 **facts)
