"""Names written in old encodings, decoded as well as can be and never fatally.

A zip member's name is UTF-8 only when the archive says so (flag bit 11, or an
Info-ZIP Unicode Path field). Otherwise it is in whatever code page the tool
used: CP437 by the zip specification, GBK on Chinese Windows (tar names: the
system's code page, CP1252 on most old servers). Every byte string reads
"without error" in CP437 or CP1252 and most read in GBK, so GBK needs evidence:

* at least two ideographs, every byte above 0x7F paired with another (GBK's
  two-byte characters), and
* the Western reading looks like noise: a symbol or box-drawing character, or
  four accented letters in a row. "Größe" in Latin-1 is valid GBK (one
  ideograph) but reads as a word in CP1252, so it stays Western.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

from pipeline.names import mostly_utf8

UTF8_FLAG = 0x800
UNICODE_PATH_FIELD = 0x7075
MIN_GBK_IDEOGRAPHS = 2
MAX_ACCENTED_RUN = 4


def decode_zip_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & UTF8_FLAG:
        return info.orig_filename
    # zipfile read the name as CP437, which maps every byte: encoding gives it back.
    raw = info.orig_filename.encode("cp437")
    unicode_path = _unicode_path_field(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    return decode_legacy(raw, fallback="cp437")


def decode_tar_name(name: str) -> str:
    """tarfile passes undecodable bytes as surrogate escapes; old tars were CP1252."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
    return decode_legacy(raw, fallback="cp1252")


def decode_legacy(raw: bytes, fallback: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if mostly_utf8(raw):  # UTF-8 cut inside a character, or with a stray bad byte
        return raw.decode("utf-8", errors="replace")
    western = raw.decode(fallback, errors="replace")
    if _looks_like_gbk(raw) and _looks_like_noise(western):
        return raw.decode("gbk")
    return western


def _looks_like_gbk(raw: bytes) -> bool:
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError:
        return False
    if sum(_is_ideograph(char) for char in text) < MIN_GBK_IDEOGRAPHS:
        return False
    return _high_bytes_come_in_pairs(raw)


def _looks_like_noise(western: str) -> bool:
    run = longest = 0
    for char in western:
        if ord(char) < 0x80:
            run = 0
            continue
        if not char.isalpha():
            return True
        run += 1
        longest = max(longest, run)
    return longest >= MAX_ACCENTED_RUN


def _high_bytes_come_in_pairs(raw: bytes) -> bool:
    index = 0
    while index < len(raw):
        if raw[index] < 0x80:
            index += 1
            continue
        if index + 1 >= len(raw) or raw[index + 1] < 0x80:
            return False
        index += 2
    return True


def _is_ideograph(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def _unicode_path_field(extra: bytes, raw_name: bytes) -> str | None:
    """Info-ZIP's UTF-8 copy of the name, trusted only if it was made from this name."""
    for field_id, data in iter_extra_fields(extra):
        if field_id != UNICODE_PATH_FIELD or len(data) < 5 or data[0] != 1:
            continue
        (name_crc,) = struct.unpack("<I", data[1:5])
        if name_crc != zlib.crc32(raw_name):
            return None
        try:
            return data[5:].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def iter_extra_fields(extra: bytes) -> list[tuple[int, bytes]]:
    fields, offset = [], 0
    while offset + 4 <= len(extra):
        field_id, size = struct.unpack("<HH", extra[offset:offset + 4])
        fields.append((field_id, extra[offset + 4:offset + 4 + size]))
        offset += 4 + size
    return fields
