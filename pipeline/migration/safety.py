"""What a hostile archive cannot do: escape by its names, or expand without bound.

Names: an entry whose name climbs out (``..``), starts at a root (``/``, ``C:``,
``\\\\server``) or passes through a link is refused; nothing is ever written under
an entry's name anyway, but such a name says the archive was made to attack.

Expansion: every byte an archive produces is counted against a budget shared
by the outermost archive and every archive inside it, and against the ratio of
expanded to compressed bytes, per entry and per archive, while it streams, so
a bomb stops after at most ``ratio x compressed`` bytes.
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
    """What one archive expanded to, against the compressed bytes it read so far."""

    def __init__(self, name: str, budget: ExpansionBudget,
                 compressed: Callable[[], int]):
        self.name = name
        self.budget = budget
        self.compressed = compressed
        self.expanded = 0

    @property
    def limits(self) -> Limits:
        return self.budget.limits

    def add(self, size: int) -> None:
        self.budget.spend(size)
        self.expanded += size
        compressed = max(self.compressed(), 1)
        if self.limits.is_bomb(self.expanded, compressed):
            raise ArchiveStopped(
                DECOMPRESSION_BOMB,
                f"{self.name} expanded {self.expanded} bytes from {compressed} "
                f"(over {self.limits.max_ratio:g}:1)",
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
