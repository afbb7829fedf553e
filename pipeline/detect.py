"""What a file really is, judged from its content; the name only breaks ties.

libmagic reads the first bytes. Two families need a closer look, because their
first bytes say too little:

* ZIP containers: OOXML (docx, xlsx, pptx) and OpenDocument files all begin
  like any zip; the members inside tell them apart, and a container without a
  readable central directory is corrupt.
* E-mail: libmagic often calls an RFC 822 message ``text/plain``.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import magic

from pipeline.errors import CorruptFile

# Enough for libmagic to tell text encodings and most binary formats apart.
HEAD_BYTES = 64 * 1024

# libmagic's older or alternative names, mapped to the IANA ones.
ALIASES = {
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/x-icon": "image/vnd.microsoft.icon",
    "application/x-gzip": "application/gzip",
    "application/x-zip-compressed": "application/zip",
    "text/x-csv": "text/csv",
    "application/csv": "text/csv",
    "image/x-tiff": "image/tiff",
    "image/heif": "image/heic",
    "application/x-pdf": "application/pdf",
    "message/x-emlx": "message/rfc822",
    "text/x-mail": "message/rfc822",
    "application/rtf": "text/rtf",
}

# mimetypes reports "foo.tar.gz" as a tar with a gzip encoding; the bytes say gzip.
COMPRESSION_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                     "xz": "application/x-xz"}

OOXML_PARTS = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}

ZIP_FAMILY = {"application/zip", "application/octet-stream"} | set(OOXML_PARTS.values())

EMAIL_HEADER = re.compile(rb"^([A-Za-z][A-Za-z0-9-]*):[ \t]", re.MULTILINE)
EMAIL_KEY_HEADERS = {b"from", b"date", b"subject", b"message-id", b"received",
                     b"mime-version", b"to", b"return-path"}

_local = threading.local()


class CorruptContainer(CorruptFile):
    """A ZIP container without a readable directory; ``mime_type`` is libmagic's type."""

    def __init__(self, message: str, mime_type: str):
        super().__init__(message)
        self.mime_type = mime_type


@dataclass(frozen=True)
class Detection:
    mime_type: str
    charset: str | None
    extension_mismatch: str | None  # the type the name claimed, when it differs


def _magic() -> tuple[magic.Magic, magic.Magic]:
    # A libmagic handle is not thread-safe; one per thread, made once.
    if not hasattr(_local, "mime"):
        _local.mime = magic.Magic(mime=True)
        _local.encoding = magic.Magic(mime_encoding=True)
    return _local.mime, _local.encoding


def detect(path: Path, head: bytes, name: str) -> Detection:
    """Detect the type of the file at ``path`` whose first bytes are ``head``."""
    by_magic, by_encoding = _magic()
    mime_type = ALIASES.get(by_magic.from_buffer(head), by_magic.from_buffer(head))
    charset = None

    if mime_type in ZIP_FAMILY and head.startswith(b"PK"):
        mime_type = _inspect_zip(path, mime_type)
    elif mime_type.startswith("text/") or mime_type == "message/rfc822":
        charset = by_encoding.from_buffer(head)
        if mime_type == "text/plain" and _looks_like_email(head):
            mime_type = "message/rfc822"
        mime_type = _break_text_tie(mime_type, name)

    return Detection(mime_type, charset, _mismatch(name, mime_type))


def _inspect_zip(path: Path, fallback: str) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "mimetype" in names:
                declared = archive.read("mimetype")[:200].decode("ascii", "replace").strip()
                if declared.startswith("application/"):
                    return declared
            if "[Content_Types].xml" in names:
                for folder, office_type in OOXML_PARTS.items():
                    if any(member.startswith(folder) for member in names):
                        return office_type
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CorruptContainer(f"damaged zip container: {error}", _zip_type(fallback)) from error
    return _zip_type(fallback)


def _zip_type(by_magic: str) -> str:
    return "application/zip" if by_magic == "application/octet-stream" else by_magic


def _looks_like_email(head: bytes) -> bool:
    header_block = head.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    names = {match.group(1).lower() for match in EMAIL_HEADER.finditer(header_block)}
    first_line = header_block.split(b"\n", 1)[0]
    starts_like_header = bool(EMAIL_HEADER.match(first_line)) or first_line.startswith(b"From ")
    return starts_like_header and len(names & EMAIL_KEY_HEADERS) >= 2 and b"from" in names


def _break_text_tie(mime_type: str, name: str) -> str:
    # libmagic cannot tell Markdown or CSV from plain text in every case; the
    # extension decides only between text types.
    if mime_type != "text/plain":
        return mime_type
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed and guessed.startswith("text/"):
        return guessed
    return mime_type


def _mismatch(name: str, mime_type: str) -> str | None:
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    guessed = COMPRESSION_TYPES.get(encoding or "", guessed)
    if guessed is None:
        return None
    guessed = ALIASES.get(guessed, guessed)
    if guessed == mime_type or _same_family(guessed, mime_type):
        return None
    return guessed


def _same_family(claimed: str, actual: str) -> bool:
    # A .txt that is CSV, or a .xml that libmagic calls text/xml, is no lie.
    text_like = {"text/plain", "text/csv", "text/markdown", "text/xml", "application/xml"}
    return claimed in text_like and actual in text_like


def is_allowed(mime_type: str, allowed_patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(mime_type, pattern) for pattern in allowed_patterns)
