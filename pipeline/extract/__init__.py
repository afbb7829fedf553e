"""Reading untrusted files: PDF facts and text, thumbnails, text of text files.

The readers in this package run inside a sandbox process (``sandbox.py``) with a
memory limit and a deadline; the worker only ever sees their results.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Extraction:
    """What the readers learned about one file."""

    page_count: int | None = None
    encrypted: bool | None = None
    text: str | None = None
    thumbnail: bytes | None = None  # JPEG
    notes: list[str] = field(default_factory=list)
