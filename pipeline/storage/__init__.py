"""Object storage: an S3 bucket in production, a local folder on the embedded default."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.base import ObjectInfo, ObjectStore, StoredObject

__all__ = ["ObjectInfo", "ObjectStore", "StoredObject", "open_store"]


def open_store(settings: Settings) -> ObjectStore:
    """The store that ``SLUICE_STORAGE_URL`` names; build one per process and reuse it."""
    location = settings.storage
    if location.scheme == "s3":
        from pipeline.storage.s3 import S3Store

        return S3Store(settings)
    from pipeline.storage.local import LocalStore

    return LocalStore(location.path, sse=None)
