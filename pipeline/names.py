"""File names from the outside world, made safe to record and to show."""

from __future__ import annotations

import os
import re
import unicodedata

# C0 and C1 control characters and DEL; never useful in a name, dangerous in logs.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_NAME_CHARS = 255


def decode_name(name: str) -> str:
    """A readable name for one that may not be valid UTF-8.

    Python hands non-UTF-8 bytes over as surrogate escapes; such names most often
    come from old Windows shares, so they are read as CP1252 rather than dropped.
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = os.fsencode(name)
    return raw.decode("cp1252", errors="replace")


def clean_name(name: str) -> str:
    """The base name as recorded in ``original_name``: no folders, no controls."""
    name = decode_name(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", CONTROL_CHARS.sub("", name)).strip()
    if name in ("", ".", ".."):
        return "unnamed"
    return name[:MAX_NAME_CHARS]


def clean_path(path: str) -> str:
    """A source path fit for a database column and a log line."""
    return CONTROL_CHARS.sub("?", decode_name(path))


def safe_file_name(name: str, limit_bytes: int = 200) -> str:
    """A name safe to create on any disk: no separators, no leading dash or dot."""
    name = clean_name(name)
    name = re.sub(r"[/\\:*?\"<>|]", "_", name).lstrip("-. ") or "unnamed"
    encoded = name.encode("utf-8")[:limit_bytes]
    return encoded.decode("utf-8", errors="ignore")
