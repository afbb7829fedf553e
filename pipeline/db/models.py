"""Tables: documents, their extracted text, and the append-only audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("received", "processing", "stored", "duplicate", "failed")
FINAL_STATUSES = frozenset({"stored", "duplicate", "failed"})
SOURCES = ("watch", "http", "cli", "migration")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite keeps no zone, so values are normalised to UTC on the way in and
    marked UTC on the way out; Postgres stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntegerId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), default="received")
    original_name: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(Text)
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    mime_type: Mapped[str | None] = mapped_column(String(255))
    s3_bucket: Mapped[str | None] = mapped_column(String(255))
    s3_key: Mapped[str | None] = mapped_column(Text)
    thumbnail_key: Mapped[str | None] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    encrypted: Mapped[bool | None] = mapped_column(Boolean)
    text_length: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    uploaded_by: Mapped[str | None] = mapped_column(String(255))
    content_type_id: Mapped[int | None] = mapped_column(Integer)
    object_id: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    source_path: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("documents.id", name="fk_documents_duplicate_of")
    )
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)

    # Internal bookkeeping, not part of the public document.
    spool_ref: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column()

    # Batch migration: the entry's own modification time, and the run it came in.
    source_modified_at: Mapped[datetime | None] = mapped_column()
    migration_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        # One stored, live document per content; duplicates point at it.
        Index(
            "uq_documents_stored_sha256",
            "sha256",
            unique=True,
            sqlite_where=text("status = 'stored' AND is_active"),
            postgresql_where=text("status = 'stored' AND is_active"),
        ),
        Index("ix_documents_uploaded_at", "uploaded_at"),
        Index("ix_documents_status_updated_at", "status", "updated_at"),
        Index("ix_documents_link", "content_type_id", "object_id"),
        Index("ix_documents_sha256", "sha256"),
        Index("ix_documents_migration_run_status", "migration_run_id", "status"),
    )


class DocumentText(Base):
    """Extracted text, kept apart so that listing documents never drags it along."""

    __tablename__ = "document_texts"

    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[str] = mapped_column(Text)


class DocumentEvent(Base):
    """What happened to which document, when, done by which worker and task."""

    __tablename__ = "document_events"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# Migration 0002: search. PostgreSQL indexes names and texts with GIN over
# sluice_search_vector() (a SQL function the migration creates); SQLite keeps an
# FTS5 table and its key table, maintained by triggers, outside this metadata.
Index("ix_documents_duplicate_of", Document.duplicate_of)
Index(
    "ix_document_texts_search",
    func.sluice_search_vector(DocumentText.content),
    postgresql_using="gin",
).ddl_if(dialect="postgresql")
Index(
    "ix_documents_name_search",
    func.sluice_search_vector(Document.original_name),
    postgresql_using="gin",
).ddl_if(dialect="postgresql")


class MigrationRun(Base):
    """One batch migration of a source; its id derives from the source and options."""

    __tablename__ = "migration_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="running")
    owner: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    passes: Mapped[int] = mapped_column(Integer, default=1)


class MigrationEntry(Base):
    """What became of one entry of a migration run; written once per entry."""

    __tablename__ = "migration_entries"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("migration_runs.id"))
    # sha256 of the entry's key (its place in the source), unique within the run.
    entry_key: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    document_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    source_modified_at: Mapped[datetime | None] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("uq_migration_entries_run_key", "run_id", "entry_key", unique=True),
    )


# Migration 0003: finding which documents name an object, before a reconciliation
# reports it as left over or a repair deletes it.
Index("ix_documents_s3_key", Document.s3_key)
Index("ix_documents_thumbnail_key", Document.thumbnail_key)

RUN_STATUSES = ("running", "finished", "failed", "abandoned")


class ReconciliationRun(Base):
    """One comparison of the documents table with the bucket, and what it found."""

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    trigger: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    store: Mapped[str] = mapped_column(String(16))
    bucket: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(Text, default="")
    # Options as asked (deep, sample size, grace, repairs, dry run) and what was
    # counted on the way (objects listed, rows scanned, objects inspected, ...).
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    finding_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    findings_total: Mapped[int] = mapped_column(Integer, default=0)
    reports: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_reconciliation_runs_started_at", "started_at"),)


class ReconciliationFinding(Base):
    """A difference between the table and the bucket, and any repair made of it."""

    __tablename__ = "reconciliation_findings"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(
        BigIntegerId, ForeignKey("reconciliation_runs.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    document_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    key: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The repair this kind of finding has (None: report only), and what became
    # of it in this run: None (not asked), "dry_run", "done", "skipped", "failed".
    repair: Mapped[str | None] = mapped_column(String(32))
    repair_result: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_reconciliation_findings_run_id", "run_id", "id"),
        Index("ix_reconciliation_findings_document_id", "document_id"),
    )
