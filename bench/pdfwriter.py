"""A minimal PDF writer: pages of Helvetica text, optionally with one JPEG.

Enough to make born-digital PDFs whose text every reader extracts, without a PDF
library that Sluice does not already ship.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

A4_POINTS = (595, 842)
FONT_SIZE = 10
LINE_HEIGHT = 13
MARGIN = 56


@dataclass(frozen=True)
class Picture:
    """A JPEG to place on the first page."""

    data: bytes
    width: int
    height: int


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page_stream(lines: list[str], picture: Picture | None) -> bytes:
    parts = []
    top = A4_POINTS[1] - MARGIN
    if picture is not None:
        # The picture fills the top half of the first page; text runs below it.
        shown_w = A4_POINTS[0] - 2 * MARGIN
        shown_h = shown_w * picture.height // picture.width
        top -= shown_h
        parts.append(f"q {shown_w} 0 0 {shown_h} {MARGIN} {top} cm /Im1 Do Q")
        top -= LINE_HEIGHT
    parts.append(f"BT /F1 {FONT_SIZE} Tf {LINE_HEIGHT} TL {MARGIN} {top} Td")
    for line in lines:
        parts.append(f"({_escape(line)}) Tj T*")
    parts.append("ET")
    return zlib.compress("\n".join(parts).encode("latin-1"))


def lines_per_page(with_picture: bool, picture_height_points: int = 0) -> int:
    usable = A4_POINTS[1] - 2 * MARGIN - (picture_height_points + LINE_HEIGHT
                                          if with_picture else 0)
    return usable // LINE_HEIGHT


def build_pdf(pages: list[list[str]], picture: Picture | None = None) -> bytes:
    """A PDF with one page per list of lines; ``picture`` goes on page 1."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree's number is known
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               b"/Encoding /WinAnsiEncoding >>")
    image = None
    if picture is not None:
        image = add(
            f"<< /Type /XObject /Subtype /Image /Width {picture.width} "
            f"/Height {picture.height} /ColorSpace /DeviceRGB /BitsPerComponent 8 "
            f"/Filter /DCTDecode /Length {len(picture.data)} >>\nstream\n".encode()
            + picture.data + b"\nendstream"
        )

    kids = []
    for number, lines in enumerate(pages):
        stream = _page_stream(lines, picture if number == 0 else None)
        content = add(f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n"
                      .encode() + stream + b"\nendstream")
        xobjects = f" /XObject << /Im1 {image} 0 R >>" if image and number == 0 else ""
        kids.append(add(
            f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {A4_POINTS[0]} "
            f"{A4_POINTS[1]}] /Contents {content} 0 R /Resources << /Font << /F1 "
            f"{font} 0 R >>{xobjects} >> >>".encode()
        ))
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R >>".encode()
    objects[tree - 1] = (f"<< /Type /Pages /Count {len(kids)} /Kids ["
                         + " ".join(f"{kid} 0 R" for kid in kids) + "] >>").encode()
    return _serialize(objects, catalog)


def _serialize(objects: list[bytes], root: int) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)
