"""Which keys in the bucket are Sluice's, and which document each is named after.

Sluice writes under two prefixes only, ``<storage prefix>documents/`` and
``<storage prefix>thumbnails/``, with keys made from the document id (see
``pipeline.keys``). Everything else in the bucket is someone else's and is never
listed. Inside the two prefixes, names that file browsers and NAS boxes leave
behind (``.DS_Store``, ``Thumbs.db``, ``@eaDir``) and console folder markers
(keys ending in ``/``) are not documents and never findings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pipeline import keys
from pipeline.reconcile.findings import ORIGINAL, THUMBNAIL

UUID_TEXT_LENGTH = 36
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "@eadir", "#recycle",
                           "$recycle.bin", "lost+found", "icon\r"})


@dataclass(frozen=True)
class Section:
    """One of Sluice's prefixes and the role its objects play for a document."""

    prefix: str
    role: str


@dataclass(frozen=True)
class Layout:
    bucket: str
    prefix: str

    @property
    def originals(self) -> Section:
        return Section(f"{self.prefix}{keys.ORIGINALS}", ORIGINAL)

    @property
    def thumbnails(self) -> Section:
        return Section(f"{self.prefix}{keys.THUMBNAILS}", THUMBNAIL)

    @property
    def sections(self) -> tuple[Section, Section]:
        return (self.originals, self.thumbnails)


def is_ignored_key(key: str, section: Section) -> bool:
    rest = key[len(section.prefix):]
    if not rest or rest.endswith("/"):
        return True
    return any(part.startswith(".") or part.lower() in IGNORED_NAMES
               for part in rest.split("/"))


def named_document(key: str, section: Section) -> uuid.UUID | None:
    """The document id a key is named after, if it is named after one."""
    candidate = key[len(section.prefix):len(section.prefix) + UUID_TEXT_LENGTH]
    try:
        parsed = uuid.UUID(candidate)
    except ValueError:
        return None
    return parsed if str(parsed) == candidate else None
