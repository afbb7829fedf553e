"""Text as it is stored for search."""

from __future__ import annotations

# Enough for a 5,000-page report; beyond it a document is still stored, with the
# first part of its text searchable and a note saying so.
MAX_TEXT_CHARS = 20_000_000


# What the stored text leaves out, or turns into a line break:
# * NUL, which Postgres text columns refuse;
# * the other C0 controls but tab and line breaks, and DEL: PDF fonts map glyphs
#   to them (\x04, \x08), and they only break words apart for search;
# * U+FFFE and U+FFFF, non-characters: PDFium marks a word hyphenated across a
#   line break with U+FFFE ("Wider\ufffespruch"), so dropping it joins the word;
# * a form feed becomes a line break.
_DROP = {code: None for code in (*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F,
                                 0xFFFE, 0xFFFF)}
_TABLE = str.maketrans({**_DROP, 0x0C: "\n"})


def normalize_text(text: str) -> str:
    # CRLF adds nothing to search. (About 2 ms per MB of text here.)
    return text.translate(_TABLE).replace("\r\n", "\n").replace("\r", "\n")


def truncate(text: str, notes: list[str]) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    notes.append(f"text truncated to {MAX_TEXT_CHARS} characters")
    return text[:MAX_TEXT_CHARS]
