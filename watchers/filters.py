"""Names in an inbox that are not documents (yet)."""

from __future__ import annotations

import fnmatch
from pathlib import PurePath

# Hidden files and folders (".*" covers macOS "._x" and ".DS_Store"), editors' and
# browsers' partial files, and the folders NAS boxes keep their own metadata in.
IGNORED_PATTERNS = ("~*", "*.part", "*.tmp", "*.crdownload", "*.partial", "*.swp")
IGNORED_NAMES = {"thumbs.db", "desktop.ini", "@eadir", "#recycle", "$recycle.bin",
                 "lost+found"}


def is_ignored_name(name: str) -> bool:
    lowered = name.lower()
    if name.startswith(".") or lowered in IGNORED_NAMES:
        return True
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in IGNORED_PATTERNS)


def is_ignored(relative: PurePath) -> bool:
    """True if any part of the path (a folder or the file itself) is ignored."""
    return any(is_ignored_name(part) for part in relative.parts)
