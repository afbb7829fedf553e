"""Text as it is stored for search."""

from __future__ import annotations

# Enough for a 5,000-page report; beyond it a document is still stored, with the
# first part of its text searchable and a note saying so.
MAX_TEXT_CHARS = 20_000_000


def normalize_text(text: str) -> str:
    # Postgres text columns refuse NUL; CRLF adds nothing to search.
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def truncate(text: str, notes: list[str]) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    notes.append(f"text truncated to {MAX_TEXT_CHARS} characters")
    return text[:MAX_TEXT_CHARS]
