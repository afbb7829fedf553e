"""What a hostile archive cannot do: escape by its names, or expand without bound.

Names: an entry whose name climbs out (``..``), starts at a root (``/``, ``C:``,
``\\\\server``) or passes through a link is refused; nothing is ever written under
an entry's name anyway, but such a name says the archive was made to attack.

Expansion: every byte an archive produces is counted against a budget shared
by the outermost archive and every archive inside it. Each entry is judged on
its own against the ratio of expanded to compressed bytes: a zip member by its
declared sizes before it is read and by what it really yields while it streams,
a member of a compressed tar by the compressed bytes read while it expands. An
entry that expands to no more than ``ratio_after_bytes`` is never refused for
its ratio (blank scans, BMP and TIFF, text pass 100:1); beyond that a bomb stops
after at most ``ratio x compressed`` bytes. A zip bomb is refused alone, its
siblings come in; a bomb inside a compressed tar stops the tar there, since
what follows it can only be reached by expanding it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.migration.entries import (
    DECOMPRESSION_BOMB,
    UNSAFE_PATH,
    ArchiveStopped,
    EntryRefused,
)
from pipeline.settings import Settings

DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Limits:
    max_expanded_bytes: int
    max_ratio: float
    ratio_after_bytes: int
    max_depth: int
    max_file_size: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_expanded_bytes=settings.migrate_max_expanded_bytes,
            max_ratio=settings.migrate_max_ratio,
            ratio_after_bytes=settings.migrate_ratio_after_bytes,
            max_depth=settings.migrate_max_depth,
            max_file_size=settings.max_file_size,
        )

    def is_bomb(self, expanded: int, compressed: int) -> bool:
        """One entry's ratio: never below ``ratio_after_bytes`` expanded."""
        past_threshold = expanded > self.ratio_after_bytes
        return past_threshold and expanded > compressed * self.max_ratio


def safe_member_path(name: str) -> str:
    """The member's path as "/"-joined parts; raises EntryRefused(unsafe_path).

    Backslashes count as separators: old Windows tools wrote them into zips.
    """
    if "\x00" in name:
        raise EntryRefused(UNSAFE_PATH, "the name holds a NUL character")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or DRIVE_LETTER.match(unified):
        raise EntryRefused(UNSAFE_PATH, "absolute path")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise EntryRefused(UNSAFE_PATH, "the path climbs out of the archive (..)")
    if not parts:
        raise EntryRefused(UNSAFE_PATH, "empty name")
    return "/".join(parts)


def through_link(path: str, links: set[str]) -> str | None:
    """The link an entry's path passes through, if any (``a/link/x``: ``a/link``)."""
    parts = path.split("/")
    for end in range(1, len(parts)):
        folder = "/".join(parts[:end])
        if folder in links:
            return folder
    return None


class ExpansionBudget:
    """Bytes the outermost archive and everything inside it may expand to."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.expanded = 0

    @property
    def remaining(self) -> int:
        return self.limits.max_expanded_bytes - self.expanded

    def spend(self, size: int) -> None:
        self.expanded += size
        if self.expanded > self.limits.max_expanded_bytes:
            raise ArchiveStopped(
                DECOMPRESSION_BOMB,
                f"the archive expanded past the limit of "
                f"{self.limits.max_expanded_bytes} bytes",
                whole_tree=True,
            )


class ArchiveMeter:
    """What one archive expanded to, spent from the budget as it streams.

    With ``compressed`` (the compressed bytes read so far: a compressed tar), the
    bytes since ``start_member`` are judged against the compressed bytes read
    meanwhile, so each member (and the skip over it) is judged on its own. A zip
    has no such stream: its members are judged by ``metered``.
    """

    def __init__(self, name: str, budget: ExpansionBudget,
                 compressed: Callable[[], int] | None = None):
        self.name = name
        self.budget = budget
        self.compressed = compressed
        self.expanded = 0
        self.member = name
        self._since: tuple[int, int] = (0, 0)

    @property
    def limits(self) -> Limits:
        return self.budget.limits

    def start_member(self, name: str) -> None:
        """From here on the bytes belong to the member ``name`` (its header was read)."""
        self.member = name
        self._since = (self.expanded, self.compressed() if self.compressed else 0)

    def add(self, size: int) -> None:
        self.budget.spend(size)
        self.expanded += size
        if self.compressed is None:
            return
        expanded = self.expanded - self._since[0]
        compressed = max(self.compressed() - self._since[1], 1)
        if self.limits.is_bomb(expanded, compressed):
            raise ArchiveStopped(
                DECOMPRESSION_BOMB,
                f"{self.member} expanded {expanded} bytes from {compressed} "
                f"(over {self.limits.max_ratio:g}:1); the rest of {self.name} lies "
                f"behind it",
            )


def metered(chunks: Iterator[bytes], meter: ArchiveMeter,
            compressed_size: int | None) -> Iterator[bytes]:
    """An archive member's bytes, counted; an entry-level bomb is refused alone."""
    limits, expanded = meter.limits, 0
    for chunk in chunks:
        expanded += len(chunk)
        if compressed_size is not None and limits.is_bomb(expanded,
                                                          max(compressed_size, 1)):
            raise EntryRefused(
                DECOMPRESSION_BOMB,
                f"expanded past {expanded} bytes from {compressed_size} compressed "
                f"(over {limits.max_ratio:g}:1)",
            )
        meter.add(len(chunk))
        yield chunk


def over_budget(size: int, meter: ArchiveMeter) -> str | None:
    """Why an entry declaring ``size`` bytes does not fit what is left of the budget."""
    remaining = meter.budget.remaining
    if size <= remaining:
        return None
    return (f"declares {size} bytes; only {max(remaining, 0)} of the expansion "
            f"budget of {meter.limits.max_expanded_bytes} bytes are left")
