"""PDF facts, text and first-page thumbnail with PDFium (pypdfium2).

PDFium extracts text about 4x faster than pypdf and renders pages, which pypdf
cannot; one library opens the file once for all three jobs.
"""

from __future__ import annotations

import codecs
import ctypes
import io
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from pipeline.errors import CorruptFile, DecompressionBomb
from pipeline.extract import Extraction
from pipeline.extract.textnorm import MAX_TEXT_CHARS, normalize_text, truncate

# PDF's own limit is 14,400 units a side; UserUnit may scale that, so allow a lot
# more, but a page two billion points tall is a damaged file, not a document.
MAX_PAGE_POINTS = 200_000
JPEG_QUALITY = 80


# Filters only images may use. Poppler and other viewers will still try them on a
# page's content stream, which is how the "JBIG2 bomb" PDFs exhaust a reader.
IMAGE_ONLY_FILTERS = {"/JBIG2Decode", "/JPXDecode", "/DCTDecode", "/CCITTFaxDecode"}


def extract_pdf(path: Path, max_px: int) -> Extraction:
    _refuse_codec_content_streams(path)
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            # Without the user password nothing inside can be read; the original is
            # still worth keeping, so this is a stored document, not a failure.
            return Extraction(encrypted=True, notes=["password required to open"])
        raise CorruptFile(f"unreadable PDF: {error}") from error

    try:
        return _read_document(document, max_px)
    except pdfium.PdfiumError as error:
        raise CorruptFile(f"damaged PDF: {error}") from error
    finally:
        document.close()


def _refuse_codec_content_streams(path: Path) -> None:
    """Refuse page content encoded with an image codec: a decompression-bomb shape.

    PDFium ignores such streams, but the stored original will be opened later by
    other readers that do not. A byte scan keeps the cost off ordinary files.
    """
    if not _contains(path, b"JBIG2Decode"):
        return

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        for page in reader.pages:
            for stream in _content_streams(page):
                filters = stream.get("/Filter")
                names = filters if isinstance(filters, list) else [filters]
                if IMAGE_ONLY_FILTERS.intersection(str(name) for name in names):
                    raise DecompressionBomb(
                        "page content encoded with an image codec "
                        f"({', '.join(map(str, names))}): a decompression-bomb shape"
                    )
    except (PyPdfError, KeyError, ValueError, RecursionError):
        return  # PDFium decides whether the file is readable


def _contains(path: Path, needle: bytes, chunk_bytes: int = 1 << 20) -> bool:
    tail = b""
    with path.open("rb") as source:
        while chunk := source.read(chunk_bytes):
            if needle in tail + chunk[: len(needle)] or needle in chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def _content_streams(page: object) -> list:
    contents = page.get("/Contents")  # type: ignore[attr-defined]
    if contents is None:
        return []
    contents = contents.get_object()
    items = contents if isinstance(contents, list) else [contents]
    return [item.get_object() for item in items]


def _read_document(document: pdfium.PdfDocument, max_px: int) -> Extraction:
    result = Extraction(
        page_count=len(document),
        encrypted=pdfium_c.FPDF_GetSecurityHandlerRevision(document.raw) != -1,
    )
    if result.page_count == 0:
        raise CorruptFile("PDF has no pages")

    # Page 1 is loaded once, for the thumbnail and for its text.
    first = document[0]
    result.thumbnail = render_first_page(first, max_px)
    result.text = truncate(text_of(document, first), result.notes)
    return result


def text_of(document: pdfium.PdfDocument, first: pdfium.PdfPage | None = None) -> str:
    """The text of every page; ``first``, when given, is page 1 already loaded (and closed here)."""
    pages, total = [], 0
    for index in range(len(document)):
        if index == 0 and first is not None:
            text = _text_of_page(first.raw)
            first.close()
        else:
            text = _load_text_of_page(document, index)
        pages.append(text)
        total += len(text)
        if total > MAX_TEXT_CHARS:
            break
    return "\n\n".join(pages)


# The per-page calls go to PDFium's C API directly: pypdfium2's page and text page
# objects (finalizers, parent tracking) cost about 0.5 ms per 20 pages, for handles
# that live a few lines here.
def _load_text_of_page(document: pdfium.PdfDocument, index: int) -> str:
    page = pdfium_c.FPDF_LoadPage(document.raw, index)
    if not page:
        raise pdfium.PdfiumError(f"failed to load page {index + 1}")
    try:
        return _text_of_page(page)
    finally:
        pdfium_c.FPDF_ClosePage(page)


def _text_of_page(page: pdfium_c.FPDF_PAGE) -> str:
    textpage = pdfium_c.FPDFText_LoadPage(page)
    if not textpage:
        raise pdfium.PdfiumError("failed to load a page's text")
    try:
        return normalize_text(_all_text(textpage))
    finally:
        pdfium_c.FPDFText_ClosePage(textpage)


def _all_text(textpage: pdfium_c.FPDF_TEXTPAGE) -> str:
    """What ``PdfTextPage.get_text_range()`` returns, in one pass of C calls."""
    count = pdfium_c.FPDFText_CountChars(textpage)
    if count < 0:
        raise pdfium.PdfiumError("failed to count a page's characters")

    # As pypdfium2 does: leave out leading and trailing characters that have no
    # text index, and size the buffer from the text indices (PDFium may write more
    # units than characters), so the text is the same as it returns.
    start, end = 0, count - 1
    while start <= end and pdfium_c.FPDFText_GetTextIndexFromCharIndex(textpage, start) < 0:
        start += 1
    while start <= end and pdfium_c.FPDFText_GetTextIndexFromCharIndex(textpage, end) < 0:
        end -= 1
    if start > end:
        return ""

    text_start = pdfium_c.FPDFText_GetTextIndexFromCharIndex(textpage, start)
    text_end = pdfium_c.FPDFText_GetTextIndexFromCharIndex(textpage, end)
    buffer = (ctypes.c_ushort * (text_end + 2 - text_start))()  # + NUL
    written = pdfium_c.FPDFText_GetText(textpage, start, end + 1 - start, buffer)
    if written <= 1:
        # Nothing but the NUL, or a failure (0): a slice to written - 1 would then
        # take the whole, unwritten buffer.
        return ""
    units = min(written - 1, len(buffer))
    return codecs.decode(memoryview(buffer)[:units], "utf-16-le", "ignore")


def render_first_page(page: pdfium.PdfPage, max_px: int) -> bytes:
    width, height = page.get_size()
    if not (0 < width <= MAX_PAGE_POINTS and 0 < height <= MAX_PAGE_POINTS):
        raise CorruptFile(f"impossible page size {width:.0f}x{height:.0f} points")

    scale = max_px / max(width, height)
    bitmap = page.render(scale=scale, may_draw_forms=True)
    image = bitmap.to_pil().convert("RGB")
    bitmap.close()

    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
