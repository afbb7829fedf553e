"""Full-text search over documents' extracted text and names, on either database.

A query is words (all must appear), ``"quoted phrases"`` and ``-excluded`` words.
It is parsed here, into words made only of letters and digits, and compiled for
the database in use, so both behave alike and no user input reaches a query
language unescaped:

* PostgreSQL: ``to_tsquery`` against GIN indexes on ``sluice_search_vector(...)``
  (migration 0002);
* SQLite: an FTS5 table kept in step with the documents by triggers (0002).

Both split words at anything that is not a letter or a digit, so that a name
such as ``scan_0001.pdf`` is found by ``scan`` or by ``0001``, and both index the
first ``SEARCH_INDEX_CHARS`` characters of a text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, false, literal_column, or_, select, text
from sqlalchemy.orm import aliased
from sqlalchemy.sql import func

from pipeline.db.models import Document, DocumentText

# The first 400,000 characters of a text are searchable: PostgreSQL refuses a
# tsvector over 1 MB, and adversarial text can cost ~2.3 bytes per character.
SEARCH_INDEX_CHARS = 400_000

TERM = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')
WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 32


@dataclass
class SearchQuery:
    """Positive terms must all match; each term is a phrase of one or more words."""

    include: list[list[str]] = field(default_factory=list)
    exclude: list[list[str]] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.include


def parse_query(raw: str) -> SearchQuery:
    query = SearchQuery()
    for match in TERM.finditer(raw):
        negated = bool(match.group(1) or match.group(3))
        words = [word.lower() for word in WORD.findall(match.group(2) or match.group(4) or "")]
        if words:
            (query.exclude if negated else query.include).append(words)
        if len(query.include) + len(query.exclude) >= MAX_TERMS:
            break
    return query


def matches(dialect: str, raw: str) -> ColumnElement[bool]:
    """A WHERE clause on ``Document``: name or text matches, or the original's text does.

    A duplicate carries no text of its own; it is found by its original's text.
    """
    query = parse_query(raw)
    if query.is_empty:
        return false()
    if dialect == "postgresql":
        return _postgres_matches(query)
    return _sqlite_matches(query)


def _postgres_tsquery(query: SearchQuery) -> str:
    def phrase(words: list[str]) -> str:
        return " <-> ".join(f"'{word}'" for word in words)

    parts = [f"({phrase(words)})" for words in query.include]
    parts += [f"!({phrase(words)})" for words in query.exclude]
    return " & ".join(parts)


def _postgres_matches(query: SearchQuery) -> ColumnElement[bool]:
    # 'simple' lowercases and does nothing else: the documents are in any language
    # and full of names and codes, which a language's stemmer would mangle.
    tsquery = func.to_tsquery(literal_column("'simple'::regconfig"), _postgres_tsquery(query))
    by_text = select(DocumentText.document_id).where(
        func.sluice_search_vector(DocumentText.content).op("@@")(tsquery)
    )
    # A subquery of its own, so that the name's GIN index serves it too.
    named = aliased(Document)
    by_name = select(named.id).where(
        func.sluice_search_vector(named.original_name).op("@@")(tsquery)
    )
    return or_(
        Document.id.in_(by_name),
        Document.id.in_(by_text),
        Document.duplicate_of.in_(by_text),
    )


def _fts5_expression(query: SearchQuery) -> str:
    def phrase(words: list[str]) -> str:
        return '"' + " ".join(words) + '"'

    expression = " AND ".join(phrase(words) for words in query.include)
    for words in query.exclude:
        expression = f"({expression}) NOT {phrase(words)}"
    return expression


def _sqlite_matches(query: SearchQuery) -> ColumnElement[bool]:
    expression = _fts5_expression(query)
    found = text(
        "SELECT k.document_id FROM document_search s"
        " JOIN document_search_keys k ON k.id = s.rowid"
        " WHERE document_search MATCH :fts"
    ).bindparams(fts=expression).columns(document_id=Document.id.type)
    by_text = text(
        "SELECT k.document_id FROM document_search s"
        " JOIN document_search_keys k ON k.id = s.rowid"
        " WHERE document_search MATCH :fts_text"
    ).bindparams(fts_text=f"content : ({expression})").columns(document_id=Document.id.type)
    return or_(Document.id.in_(found.subquery().select()),
               Document.duplicate_of.in_(by_text.subquery().select()))
