"""batch migration: the run ledger, and each document's source mtime and run

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "migration_runs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp),
        sa.Column("passes", sa.Integer(), nullable=False),
    )
    op.create_table(
        "migration_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.Uuid(), sa.ForeignKey("migration_runs.id"),
                  nullable=False),
        sa.Column("entry_key", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("document_id", sa.Uuid()),
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_message", sa.Text()),
        sa.Column("size", sa.BigInteger()),
        sa.Column("source_modified_at", Timestamp),
        sa.Column("recorded_at", Timestamp, nullable=False),
    )
    op.create_index(
        "uq_migration_entries_run_key", "migration_entries", ["run_id", "entry_key"],
        unique=True,
    )

    # Nullable columns without defaults: a plain ALTER on both SQLite and Postgres,
    # no table rebuild, instant on a large documents table.
    op.add_column("documents", sa.Column("source_modified_at", Timestamp))
    op.add_column("documents", sa.Column("migration_run_id", sa.Uuid()))
    op.create_index(
        "ix_documents_migration_run_status", "documents", ["migration_run_id", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_documents_migration_run_status", table_name="documents")
    # A plain DROP COLUMN (SQLite 3.35+): a batch rebuild of documents would lose
    # the triggers other revisions keep on it.
    for column in ("migration_run_id", "source_modified_at"):
        op.execute(f"ALTER TABLE documents DROP COLUMN {column}")
    op.drop_index("uq_migration_entries_run_key", table_name="migration_entries")
    op.drop_table("migration_entries")
    op.drop_table("migration_runs")
