"""Content-Disposition for downloads: always an attachment, any name (RFC 6266)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote


def attachment(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in ``filename*``.

    Always an attachment, so an uploaded HTML or SVG file is downloaded, never
    rendered by the browser on the bucket's or the API's origin.
    """
    ascii_name = (
        unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    )
    ascii_name = "".join(c for c in ascii_name if c.isprintable() and c not in '"\\')
    ascii_name = ascii_name.strip() or "document"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
