"""reconciliation runs and their findings; documents findable by object key

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Which live documents name an object: asked before an object is reported as
    # left over, and before a repair deletes one.
    op.create_index("ix_documents_s3_key", "documents", ["s3_key"])
    op.create_index("ix_documents_thumbnail_key", "documents", ["thumbnail_key"])

    op.create_table(
        "reconciliation_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp),
        sa.Column("store", sa.String(16), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("finding_counts", sa.JSON(), nullable=False),
        sa.Column("findings_total", sa.Integer(), nullable=False),
        sa.Column("reports", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_reconciliation_runs_started_at", "reconciliation_runs",
                    ["started_at"])

    op.create_table(
        "reconciliation_findings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            BigId,
            sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("document_id", sa.Uuid()),
        sa.Column("key", sa.Text()),
        sa.Column("role", sa.String(16)),
        sa.Column("detail", sa.JSON()),
        sa.Column("repair", sa.String(32)),
        sa.Column("repair_result", sa.String(16)),
    )
    op.create_index("ix_reconciliation_findings_run_id", "reconciliation_findings",
                    ["run_id", "id"])
    op.create_index("ix_reconciliation_findings_document_id", "reconciliation_findings",
                    ["document_id"])


def downgrade() -> None:
    op.drop_table("reconciliation_findings")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_documents_thumbnail_key", "documents")
    op.drop_index("ix_documents_s3_key", "documents")
