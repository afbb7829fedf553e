"""A local folder that behaves like the bucket: same keys, same metadata, verified bytes.

Objects live at ``ROOT/<key>``; what S3 would keep as object metadata lives in
``ROOT/.sluice-meta/<key>.json``. Nothing here is encrypted at rest: this store
is for one machine and development, and it says so (``encrypts = False``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from pipeline.errors import TransientError
from pipeline.storage.base import ObjectInfo, StoredObject

META_DIR = ".sluice-meta"
CHUNK_BYTES = 1024 * 1024


def _partial_name(name: str) -> str:
    # Per process AND thread: two deliveries of one document in one process (a
    # redelivery while the first still runs) write the same key at the same time.
    return f".{name}.{os.getpid()}-{threading.get_ident()}.part"


class LocalStore:
    encrypts = False
    region = "local"

    def __init__(self, root: Path, *, sse: str | None = None, signing_key: bytes = b"",
                 public_url: str = "http://127.0.0.1:8000"):
        self.root = root.resolve()
        self.bucket = self.root.name
        self.prefix = ""
        self._signing_key = signing_key
        self._public_url = public_url.rstrip("/")
        self.root.mkdir(parents=True, exist_ok=True)

    def configure_signing(self, signing_key: bytes, public_url: str) -> None:
        """Let presign_get build URLs that the API's /files route will accept."""
        self._signing_key = signing_key
        self._public_url = public_url.rstrip("/")

    def _object_path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or META_DIR in Path(key).parts:
            raise ValueError(f"key outside the store: {key!r}")
        return path

    def _meta_path(self, key: str) -> Path:
        return self.root / META_DIR / f"{key}.json"

    def put_file(
        self, key: str, path: Path, *, size: int, sha256: str,
        content_type: str, metadata: dict[str, str],
    ) -> StoredObject:
        with path.open("rb") as source:
            return self._write(key, iter(lambda: source.read(CHUNK_BYTES), b""),
                               sha256, content_type, metadata)

    def put_bytes(
        self, key: str, data: bytes, *, sha256: str, content_type: str,
        metadata: dict[str, str],
    ) -> StoredObject:
        return self._write(key, iter((data,)), sha256, content_type, metadata)

    def _write(self, key: str, chunks: Iterator[bytes], sha256: str,
               content_type: str, metadata: dict[str, str]) -> StoredObject:
        target = self._object_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(_partial_name(target.name))
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            # Like S3's BadDigest: bytes that do not match the declared hash are refused.
            if digest.hexdigest() != sha256:
                raise TransientError(f"object {key} changed while it was written")
            self._write_meta(key, size, sha256, content_type, metadata)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return StoredObject(key, size, sha256, None)

    def _write_meta(self, key: str, size: int, sha256: str, content_type: str,
                    metadata: dict[str, str]) -> None:
        meta_path = self._meta_path(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"size": size, "sha256": sha256, "content_type": content_type,
                  "metadata": {**metadata, "sha256": sha256}, "sse": None}
        partial = meta_path.with_name(_partial_name(meta_path.name))
        partial.write_text(json.dumps(record))
        os.replace(partial, meta_path)

    def head(self, key: str, *, with_checksum: bool = False) -> ObjectInfo | None:
        try:
            stat = self._object_path(key).stat()
        except (FileNotFoundError, ValueError):
            return None
        try:
            record = json.loads(self._meta_path(key).read_text())
        except (FileNotFoundError, ValueError):
            record = {}
        return ObjectInfo(
            key=key, size=stat.st_size,
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            sha256=record.get("sha256"), sse=None,
            metadata=record.get("metadata", {}), content_type=record.get("content_type"),
        )

    def reencrypt(self, key: str) -> ObjectInfo:
        # Nothing here is encrypted at rest (encrypts = False), so reconciliation
        # never asks; an explicit error beats a silent "done".
        raise NotImplementedError("the local object store keeps no server-side encryption")

    def delete(self, key: str) -> None:
        try:
            self._object_path(key).unlink(missing_ok=True)
        except ValueError:
            return
        self._meta_path(key).unlink(missing_ok=True)

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key, stat in _walk_in_key_order(self.root, ""):
            if key.startswith(prefix):
                yield ObjectInfo(key=key, size=stat.st_size,
                                 last_modified=datetime.fromtimestamp(stat.st_mtime, UTC))

    def local_path(self, key: str) -> Path | None:
        """Where the object at ``key`` is on disk; None when there is none."""
        try:
            path = self._object_path(key)
        except ValueError:
            return None
        return path if path.is_file() else None

    def open(self, key: str):  # noqa: ANN201 - a binary file object
        return self._object_path(key).open("rb")

    def presign_get(
        self, key: str, *, expires_in: int, filename: str, content_type: str
    ) -> str:
        expires = int(time.time()) + expires_in
        query = {"expires": str(expires), "name": filename, "type": content_type}
        query["signature"] = self.signature(key, query)
        return f"{self._public_url}/files/{quote(key)}?{urlencode(query)}"

    def signature(self, key: str, query: dict[str, str]) -> str:
        message = "\n".join((key, query["expires"], query["name"], query["type"]))
        return hmac.new(self._signing_key, message.encode(), hashlib.sha256).hexdigest()

    def check_access(self) -> bool:
        return os.access(self.root, os.W_OK)


def _walk_in_key_order(root: Path, base: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (key, stat) in the byte order S3 lists keys in.

    A folder ``a`` sorts as ``a/`` so that ``a-b`` (``-`` < ``/``) comes first,
    exactly as the bucket would list ``a-b`` before ``a/x``.
    """
    try:
        entries = list(os.scandir(root / base if base else root))
    except FileNotFoundError:
        return
    named = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == META_DIR:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        named.append(((entry.name + ("/" if is_dir else "")).encode(), entry, is_dir))
    for _, entry, is_dir in sorted(named, key=lambda item: item[0]):
        key = f"{base}{entry.name}"
        if is_dir:
            yield from _walk_in_key_order(root, key + "/")
        else:
            yield key, entry.stat(follow_symlinks=False)
