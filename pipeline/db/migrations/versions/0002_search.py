"""full-text search over documents' names and extracted text

PostgreSQL: GIN indexes on ``sluice_search_vector(...)`` of the name and of the
text. SQLite: an FTS5 table keyed through ``document_search_keys`` (a rowid of
its own, because VACUUM may renumber the documents table's implicit rowids),
kept in step by triggers. ``pipeline/search.py`` holds the matching queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Keep in step with pipeline.search.SEARCH_INDEX_CHARS.
SEARCH_INDEX_CHARS = 400_000
# Characters the PostgreSQL parser would glue words with ("scan_0001.pdf" is one
# "file" token to it); turned into spaces so that each part is a word, as in FTS5.
GLUE = "._-/\\@:+"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
    else:
        _upgrade_sqlite()


def _upgrade_postgres() -> None:
    spaces = " " * len(GLUE)
    # 'simple' only lowercases: documents come in any language and are full of
    # names, codes and numbers, which an English stemmer would mangle; searching
    # for the word that is in the document finds it, whatever its language.
    op.execute(
        f"""
        CREATE FUNCTION sluice_search_vector(value text) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT to_tsvector('simple'::regconfig,
                               translate(left(value, {SEARCH_INDEX_CHARS}), '{GLUE}', '{spaces}'))
        $$
        """
    )
    op.execute(
        "CREATE INDEX ix_document_texts_search ON document_texts"
        " USING gin (sluice_search_vector(content))"
    )
    op.execute(
        "CREATE INDEX ix_documents_name_search ON documents"
        " USING gin (sluice_search_vector(original_name))"
    )
    op.create_index("ix_documents_duplicate_of", "documents", ["duplicate_of"])


def _upgrade_sqlite() -> None:
    op.execute(
        "CREATE TABLE document_search_keys ("
        " id INTEGER PRIMARY KEY, document_id CHAR(32) NOT NULL UNIQUE)"
    )
    # Diacritics are kept, as PostgreSQL's 'simple' configuration keeps them.
    op.execute(
        "CREATE VIRTUAL TABLE document_search USING fts5("
        " name, content, tokenize = 'unicode61 remove_diacritics 0')"
    )
    key_of = "(SELECT id FROM document_search_keys WHERE document_id = {})"
    text = f"substr({{}}, 1, {SEARCH_INDEX_CHARS})"
    triggers = {
        "documents_search_insert": (
            "AFTER INSERT ON documents",
            "INSERT INTO document_search_keys (document_id) VALUES (new.id);"
            " INSERT INTO document_search (rowid, name, content)"
            f" VALUES ({key_of.format('new.id')}, new.original_name, '');",
        ),
        "documents_search_rename": (
            "AFTER UPDATE OF original_name ON documents",
            "UPDATE document_search SET name = new.original_name"
            f" WHERE rowid = {key_of.format('new.id')};",
        ),
        "documents_search_delete": (
            "AFTER DELETE ON documents",
            f"DELETE FROM document_search WHERE rowid = {key_of.format('old.id')};"
            " DELETE FROM document_search_keys WHERE document_id = old.id;",
        ),
        "document_texts_search_insert": (
            "AFTER INSERT ON document_texts",
            f"UPDATE document_search SET content = {text.format('new.content')}"
            f" WHERE rowid = {key_of.format('new.document_id')};",
        ),
        "document_texts_search_update": (
            "AFTER UPDATE OF content ON document_texts",
            f"UPDATE document_search SET content = {text.format('new.content')}"
            f" WHERE rowid = {key_of.format('new.document_id')};",
        ),
        "document_texts_search_delete": (
            "AFTER DELETE ON document_texts",
            "UPDATE document_search SET content = ''"
            f" WHERE rowid = {key_of.format('old.document_id')};",
        ),
    }
    for name, (when, body) in triggers.items():
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN {body} END")

    # Documents recorded before this revision.
    op.execute("INSERT INTO document_search_keys (document_id) SELECT id FROM documents")
    op.execute(
        "INSERT INTO document_search (rowid, name, content)"
        f" SELECT k.id, d.original_name, coalesce({text.format('t.content')}, '')"
        " FROM document_search_keys k JOIN documents d ON d.id = k.document_id"
        " LEFT JOIN document_texts t ON t.document_id = d.id"
    )
    op.create_index("ix_documents_duplicate_of", "documents", ["duplicate_of"])


def downgrade() -> None:
    op.drop_index("ix_documents_duplicate_of", "documents")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_documents_name_search")
        op.execute("DROP INDEX IF EXISTS ix_document_texts_search")
        op.execute("DROP FUNCTION IF EXISTS sluice_search_vector(text)")
        return
    for name in ("documents_search_insert", "documents_search_rename",
                 "documents_search_delete", "document_texts_search_insert",
                 "document_texts_search_update", "document_texts_search_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS document_search")
    op.execute("DROP TABLE IF EXISTS document_search_keys")
