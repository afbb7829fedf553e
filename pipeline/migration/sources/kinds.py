"""Telling archives apart by their first bytes, never by their names."""

from __future__ import annotations

import tarfile

from pipeline.migration.streams import MAGIC, decompress_head

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
TAR_BLOCK = 512
# A file that stops within this many bytes is not worth looking into.
ARCHIVE_KINDS = ("zip", "tar", "gzip", "bzip2", "xz")


def archive_kind(head: bytes) -> str | None:
    """"zip", "tar", or the compression around a tar ("gzip", "bzip2", "xz"); else None.

    A compressed file that does not hold a tar (a single gzipped PDF) is a
    document like any other, not an archive.
    """
    if head.startswith(ZIP_MAGICS):
        return "zip"
    for kind, magic in MAGIC.items():
        if head.startswith(magic):
            inside = decompress_head(kind, head, TAR_BLOCK)
            return kind if is_tar_header(inside) else None
    if is_tar_header(head):
        return "tar"
    return None


def is_tar_header(block: bytes) -> bool:
    if len(block) < TAR_BLOCK:
        return False
    try:
        tarfile.TarInfo.frombuf(block[:TAR_BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True
