"""The bucket's side of the merge: each of Sluice's prefixes as a stream in key order.

Pages are fetched ahead on a thread of their own (``prefetch``), a few at a
time, so that the bucket's answer time overlaps the merge instead of adding to
it; memory stays at those few pages whatever the size of the bucket.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from pipeline.reconcile import s3_listing
from pipeline.reconcile.prefetch import prefetch
from pipeline.reconcile.s3_listing import ObjectRef
from pipeline.storage import ObjectStore

LOCAL_PAGE_OBJECTS = 1000


def iter_objects(store: ObjectStore, prefix: str) -> Iterator[ObjectRef]:
    """Every object under ``prefix`` in the bucket's byte order, pages read ahead."""
    pages = prefetch(iter_pages(store, prefix), name="reconcile-listing")
    return chain.from_iterable(pages)


def iter_pages(store: ObjectStore, prefix: str) -> Iterator[list[ObjectRef]]:
    client = getattr(store, "client", None)
    if client is not None:
        return s3_listing.iter_pages(client, store.bucket, prefix)
    root = getattr(store, "root", None)
    if isinstance(root, Path):
        return _local_pages(root, prefix)
    return _generic_pages(store, prefix)


def _local_pages(root: Path, prefix: str) -> Iterator[list[ObjectRef]]:
    page: list[ObjectRef] = []
    for key, stat in _walk(root, prefix):
        modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
        page.append((key, stat.st_size, modified))
        if len(page) >= LOCAL_PAGE_OBJECTS:
            yield page
            page = []
    if page:
        yield page


def _walk(root: Path, base: str) -> Iterator[tuple[str, os.stat_result]]:
    """(key, stat) under ``root/base`` in S3's byte order, holding one folder's names.

    A folder ``a`` sorts as ``a/``, so ``a-b`` (``-`` < ``/``) comes first, as in
    a bucket. Dot-names are the store's own partial files and sidecars.
    """
    try:
        with os.scandir(root / base) as entries:
            names = sorted(_sort_name(entry).encode() for entry in entries
                           if not entry.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return
    for encoded in names:
        name = encoded.decode()
        if name.endswith("/"):
            yield from _walk(root, f"{base}{name}")
            continue
        try:
            key = f"{base}{name}"
            yield key, os.stat(root / key, follow_symlinks=False)
        except FileNotFoundError:
            continue


def _sort_name(entry: os.DirEntry[str]) -> str:
    return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name


def _generic_pages(store: ObjectStore, prefix: str) -> Iterator[list[ObjectRef]]:
    page: list[ObjectRef] = []
    for info in store.iter_objects(prefix):
        modified = info.last_modified.isoformat() if info.last_modified else ""
        page.append((info.key, info.size, modified))
        if len(page) >= LOCAL_PAGE_OBJECTS:
            yield page
            page = []
    if page:
        yield page
