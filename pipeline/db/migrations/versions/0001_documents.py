"""documents, their texts and the append-only event trail

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
STORED_LIVE = sa.text("status = 'stored' AND is_active")


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("original_name", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_size", sa.BigInteger()),
        sa.Column("sha256", sa.String(64)),
        sa.Column("mime_type", sa.String(255)),
        sa.Column("s3_bucket", sa.String(255)),
        sa.Column("s3_key", sa.Text()),
        sa.Column("thumbnail_key", sa.Text()),
        sa.Column("page_count", sa.Integer()),
        sa.Column("encrypted", sa.Boolean()),
        sa.Column("text_length", sa.Integer()),
        sa.Column("category", sa.String(64)),
        sa.Column("description", sa.Text()),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("uploaded_by", sa.String(255)),
        sa.Column("content_type_id", sa.Integer()),
        sa.Column("object_id", sa.String(255)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_path", sa.Text()),
        sa.Column("uploaded_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column(
            "duplicate_of",
            sa.Uuid(),
            sa.ForeignKey("documents.id", name="fk_documents_duplicate_of"),
        ),
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_message", sa.Text()),
        sa.Column("spool_ref", sa.Text()),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_until", Timestamp),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("deleted_at", Timestamp),
    )
    op.create_index("ix_documents_link", "documents", ["content_type_id", "object_id"])
    op.create_index("ix_documents_sha256", "documents", ["sha256"])
    op.create_index("ix_documents_status_updated_at", "documents", ["status", "updated_at"])
    op.create_index("ix_documents_uploaded_at", "documents", ["uploaded_at"])
    op.create_index(
        "uq_documents_stored_sha256",
        "documents",
        ["sha256"],
        unique=True,
        sqlite_where=STORED_LIVE,
        postgresql_where=STORED_LIVE,
    )

    op.create_table(
        "document_texts",
        sa.Column(
            "document_id",
            sa.Uuid(),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("content", sa.Text(), nullable=False),
    )

    op.create_table(
        "document_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("document_id", sa.Uuid(), sa.ForeignKey("documents.id"), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("task_id", sa.String(255)),
        sa.Column("detail", sa.JSON()),
    )
    op.create_index("ix_document_events_document_id", "document_events", ["document_id"])
    _forbid_event_changes()


def _forbid_event_changes() -> None:
    """The audit trail is append-only: the database itself refuses edits."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION sluice_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'document_events is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER document_events_append_only BEFORE UPDATE OR DELETE"
            " ON document_events FOR EACH ROW EXECUTE FUNCTION sluice_events_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER document_events_no_{action.lower()} BEFORE {action}"
            " ON document_events BEGIN"
            " SELECT RAISE(ABORT, 'document_events is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS document_events_append_only ON document_events")
        op.execute("DROP FUNCTION IF EXISTS sluice_events_append_only()")
    op.drop_table("document_events")
    op.drop_table("document_texts")
    op.drop_table("documents")
