"""File names from the outside world, made safe to record and to show."""

from __future__ import annotations

import os
import re
import unicodedata

# C0 and C1 control characters and DEL; never useful in a name, dangerous in logs.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The recorded name (``original_name``): a database column has no byte limit.
MAX_NAME_CHARS = 255
# One path component on ext4, XFS, btrfs, ZFS, tmpfs: 255 BYTES, not characters.
# Every name Sluice writes to disk, prefixes and suffixes included, fits in it.
NAME_MAX_BYTES = 255
# An extension longer than this is part of the name, not a type to keep.
MAX_EXTENSION_BYTES = 16


def decode_name_bytes(raw: bytes, fallback: str = "cp1252") -> str:
    """Bytes of a name in an unknown encoding, read as well as can be, never failing.

    UTF-8 wins when the bytes are UTF-8, or mostly so: a name cut in the middle of
    a character, or with a stray bad byte among many good characters, keeps its
    good characters and shows the bad bytes as U+FFFD. Anything else is read in
    the ``fallback`` legacy encoding (old Windows shares write CP1252).
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if mostly_utf8(raw):
        return raw.decode("utf-8", errors="replace")
    return raw.decode(fallback, errors="replace")


def mostly_utf8(raw: bytes) -> bool:
    """At least one multi-byte UTF-8 character, and at least twice as many as bad sequences.

    Legacy single-byte names (Latin-1 "Müller", CP1252) almost never form a valid
    multi-byte sequence, and when one does by chance, their other accented
    letters are bad sequences that outweigh it.
    """
    decoded = raw.decode("utf-8", errors="replace")
    bad = decoded.count("\ufffd") - raw.count("\ufffd".encode())
    good = sum(1 for char in decoded if ord(char) > 0x7F and char != "\ufffd")
    return good >= 1 and good >= 2 * bad


def decode_name(name: str) -> str:
    """A readable name for one that may not be valid UTF-8.

    Python hands non-UTF-8 bytes over as surrogate escapes; see ``decode_name_bytes``.
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = os.fsencode(name)
    return decode_name_bytes(raw)


def clean_name(name: str) -> str:
    """The base name as recorded in ``original_name``: no folders, no controls."""
    name = decode_name(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", CONTROL_CHARS.sub("", name)).strip()
    if name in ("", ".", ".."):
        return "unnamed"
    if len(name) <= MAX_NAME_CHARS:
        return name
    # Cut the stem, not the extension: the name a download gets must still open.
    stem, extension = os.path.splitext(name)
    if not stem or len(extension) > MAX_EXTENSION_BYTES:
        return name[:MAX_NAME_CHARS]
    return stem[:MAX_NAME_CHARS - len(extension)] + extension


def clean_path(path: str) -> str:
    """A source path fit for a database column and a log line."""
    return CONTROL_CHARS.sub("?", decode_name(path))


def cut_utf8(text: str, limit_bytes: int) -> str:
    """``text`` cut to at most ``limit_bytes`` of UTF-8, never inside a character."""
    return text.encode("utf-8")[:max(limit_bytes, 0)].decode("utf-8", errors="ignore")


def fit_name(name: str, limit_bytes: int) -> str:
    """``name`` in at most ``limit_bytes`` of UTF-8, its extension kept, cut on a character."""
    if len(name.encode("utf-8")) <= limit_bytes:
        return name
    stem, extension = os.path.splitext(name)
    if not stem or len(extension.encode("utf-8")) > min(MAX_EXTENSION_BYTES, limit_bytes // 2):
        return cut_utf8(name, limit_bytes)
    return cut_utf8(stem, limit_bytes - len(extension.encode("utf-8"))) + extension


def safe_file_name(name: str, limit_bytes: int = 200) -> str:
    """A name safe to create on any disk: no separators, no leading dash or dot.

    At most ``limit_bytes`` of UTF-8, so that the caller's prefix and suffix still
    fit in ``NAME_MAX_BYTES``; the extension is kept.
    """
    name = clean_name(name)
    name = re.sub(r"[/\\:*?\"<>|]", "_", name).lstrip("-. ") or "unnamed"
    return fit_name(name, limit_bytes) or "unnamed"
