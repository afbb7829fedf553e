"""What every object store offers the pipeline, the API and the reconciliation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """An object as the store reports it."""

    key: str
    size: int
    last_modified: datetime | None = None
    sha256: str | None = None  # hex; None where the store did not say
    sse: str | None = None  # "AES256", "aws:kms" or None when unencrypted
    kms_key_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """What a put returns once the store has verified the bytes it received."""

    key: str
    size: int
    sha256: str
    sse: str | None


class ObjectStore(Protocol):
    bucket: str
    region: str | None
    encrypts: bool  # whether objects carry server-side encryption

    def put_file(
        self, key: str, path: Path, *, size: int, sha256: str,
        content_type: str, metadata: dict[str, str],
    ) -> StoredObject:
        """Upload ``path`` under ``key``; the store verifies ``sha256`` or refuses."""

    def put_bytes(
        self, key: str, data: bytes, *, sha256: str, content_type: str,
        metadata: dict[str, str],
    ) -> StoredObject: ...

    def head(self, key: str, *, with_checksum: bool = False) -> ObjectInfo | None: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def reencrypt(self, key: str) -> ObjectInfo:
        """Rewrite ``key`` in place with the store's server-side encryption.

        The bytes, metadata and content type stay as they were; the store checks
        size and SHA-256 afterwards. Raises KeyError when the object is gone.
        """

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in key order (the bucket's byte order)."""

    def presign_get(
        self, key: str, *, expires_in: int, filename: str, content_type: str
    ) -> str:
        """A URL that downloads ``key`` as an attachment named ``filename``."""

    def check_access(self) -> bool: ...
