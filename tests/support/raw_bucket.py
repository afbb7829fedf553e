"""Changes to the bucket behind Sluice's back, as someone with console access makes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.storage import ObjectStore


class RawBucket:
    def __init__(self, store: ObjectStore):
        self.store = store
        self.client: Any = getattr(store, "client", None)
        self.root: Path | None = getattr(store, "root", None)

    @property
    def is_s3(self) -> bool:
        return self.client is not None

    def put(self, key: str, data: bytes, *, encrypted: bool = True,
            checksum: bool = True, metadata: dict[str, str] | None = None,
            content_type: str | None = None) -> None:
        """Write ``key`` directly: no metadata unless given, optionally without SSE
        or checksum (as an older writer or someone at the console would)."""
        if self.client is None:
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        extra: dict[str, str] = {}
        if encrypted:
            extra["ServerSideEncryption"] = "AES256"
        if checksum:
            extra["ChecksumAlgorithm"] = "SHA256"
        if metadata is not None:
            extra["Metadata"] = metadata
        if content_type is not None:
            extra["ContentType"] = content_type
        self.client.put_object(Bucket=self.store.bucket, Key=key, Body=data, **extra)

    def delete(self, key: str) -> None:
        if self.client is None:
            (self.root / key).unlink(missing_ok=True)
            return
        self.client.delete_object(Bucket=self.store.bucket, Key=key)

    def read(self, key: str) -> bytes:
        if self.client is None:
            return (self.root / key).read_bytes()
        return self.client.get_object(Bucket=self.store.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        return self.store.head(key) is not None

    def restore(self, key: str, data: bytes, document_id: object,
                content_type: str = "application/octet-stream") -> None:
        """Put ``data`` back the way Sluice wrote it (SSE, checksum, metadata)."""
        self.store.put_bytes(key, data, sha256=hashlib.sha256(data).hexdigest(),
                             content_type=content_type,
                             metadata={"document-id": str(document_id)})
