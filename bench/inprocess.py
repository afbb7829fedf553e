"""Sluice's steps called directly in one process, with clients made once.

This is the floor the end-to-end path is compared with: the same work per file
(hash + detect, text + thumbnail, two PUTs, one row written) with no queue, no
sandbox process, no lease and no audit events. Each step is its own method so
that ``steps`` can time them one by one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from pipeline import keys
from pipeline.extract import Extraction
from pipeline.extract.readers import read_file
from pipeline.ingest import Facts, inspect
from pipeline.settings import Settings
from pipeline.storage import StoredObject, open_store

INSERT_DOCUMENT = """
INSERT INTO documents (id, status, original_name, file_name, file_size, sha256,
    mime_type, s3_bucket, s3_key, thumbnail_key, page_count, encrypted, text_length,
    tags, source, uploaded_at, updated_at, is_active, attempts)
VALUES (%s, 'stored', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'cli', %s, %s,
    true, 1)
"""
INSERT_TEXT = "INSERT INTO document_texts (document_id, content) VALUES (%s, %s)"


class InProcess:
    """The floor pipeline: one S3 client and one database connection, reused."""

    def __init__(self, settings: Settings, database_url: str):
        self.settings = settings
        self.store = open_store(settings)
        self.db = psycopg.connect(database_url.replace("+psycopg", ""))

    def pg_backend_pid(self) -> int:
        return self.db.info.backend_pid

    def inspect(self, path: Path) -> Facts:
        return inspect(path, path.name, self.settings)

    def read(self, path: Path, facts: Facts) -> Extraction:
        return read_file(path, facts.mime_type, facts.charset, self.settings.thumbnail_max_px)

    def upload(self, document_id: uuid.UUID, path: Path, facts: Facts,
               extraction: Extraction) -> tuple[StoredObject, StoredObject | None]:
        metadata = {"document-id": str(document_id)}
        key = keys.original_key(self.store.prefix, document_id, facts.mime_type)
        stored = self.store.put_file(key, path, size=facts.size, sha256=facts.sha256,
                                     content_type=facts.mime_type, metadata=metadata)
        thumbnail = None
        if extraction.thumbnail:
            thumbnail = self.store.put_bytes(
                keys.thumbnail_key(self.store.prefix, document_id), extraction.thumbnail,
                sha256=hashlib.sha256(extraction.thumbnail).hexdigest(),
                content_type=keys.THUMBNAIL_TYPE, metadata=metadata)
        return stored, thumbnail

    def insert(self, document_id: uuid.UUID, path: Path, facts: Facts,
               extraction: Extraction, stored: StoredObject,
               thumbnail: StoredObject | None) -> None:
        now = datetime.now(UTC)
        text = extraction.text
        with self.db.cursor() as cursor:
            cursor.execute(INSERT_DOCUMENT, (
                document_id, path.name, keys.stored_file_name(document_id, facts.mime_type),
                facts.size, facts.sha256, facts.mime_type, self.store.bucket, stored.key,
                thumbnail.key if thumbnail else None, extraction.page_count,
                extraction.encrypted, len(text) if text is not None else None,
                json.dumps([]), now, now))
            if text is not None:
                cursor.execute(INSERT_TEXT, (document_id, text))
        self.db.commit()

    def process(self, path: Path) -> None:
        """One whole file, every step in order."""
        document_id = uuid.uuid4()
        facts = self.inspect(path)
        extraction = self.read(path, facts)
        stored, thumbnail = self.upload(document_id, path, facts, extraction)
        self.insert(document_id, path, facts, extraction, stored, thumbnail)

    def close(self) -> None:
        self.db.close()
