"""Which reader handles which type; runs inside the sandbox process."""

from __future__ import annotations

from pathlib import Path

from pipeline.extract import Extraction
from pipeline.extract.image import extract_image
from pipeline.extract.pdf import extract_pdf
from pipeline.extract.text import TEXT_TYPES, extract_text_file


def read_file(path: Path, mime_type: str, charset: str | None, max_px: int) -> Extraction:
    if mime_type == "application/pdf":
        return extract_pdf(path, max_px)
    if mime_type.startswith("image/"):
        return extract_image(path, mime_type, max_px)
    if mime_type in TEXT_TYPES:
        return extract_text_file(path, mime_type, charset)
    return Extraction()
