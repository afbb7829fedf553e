"""A run's per-object checks: every object (deep) or a random sample, on a pool.

The merge hands over every object a live row accounts for; in deep mode each is
inspected at once (the pool's window bounds what is in flight), otherwise a
reservoir keeps a uniform sample, inspected once the merge is done. Keys that
do not sort where their document's id does are checked here too, one HEAD each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.reconcile.bounded import BoundedPool
from pipeline.reconcile.checks import (
    Encryption,
    Inspection,
    Outcome,
    check_out_of_layout,
    inspect_object,
    make_inspector,
)
from pipeline.reconcile.findings import ORIGINAL, Finding
from pipeline.reconcile.merge import document_uuid
from pipeline.reconcile.options import RunOptions
from pipeline.reconcile.sampling import Reservoir
from pipeline.reconcile.table import FILE_SIZE, IS_ACTIVE, SHA256
from pipeline.settings import Settings
from pipeline.storage import ObjectStore

LOCAL_STORE_NOTE = ("the local object store keeps no server-side encryption "
                    "(encrypts=False): encryption was not checked")


class Inspections:
    """Per-object checks: every object (deep) or a sample, on a bounded pool."""

    def __init__(self, options: RunOptions, store: ObjectStore, settings: Settings,
                 emit: Callable[[Finding], None]):
        self.options = options
        self.store = store
        self.emit = emit
        # Until the run wires in its confirmer, candidates count as findings.
        self.confirm: Callable[[Finding], None] = emit
        self.inspector = make_inspector(store)
        self.encryption = Encryption(settings.sse, settings.sse_kms_key_id)
        self.pool: BoundedPool[Outcome] = BoundedPool(self.options.concurrency,
                                                      self._handle)
        self.sample = Reservoir[Inspection](self.options.sample_size, self.options.seed)
        self.inspected = 0
        self.errors = 0
        self.checksums: dict[str, int] = {}

    def matched(self) -> Callable[[Any, str, tuple[str, int, str]], None] | None:
        """What the merge calls for every object a live row accounts for."""
        if self.options.deep:
            return self._inspect_matched
        return self._sample_matched if self.options.sample_size else None

    def _inspect_matched(self, row: Any, role: str, obj: tuple[str, int, str]) -> None:
        self._inspect(_inspection(row, role, obj))

    def _sample_matched(self, row: Any, role: str, obj: tuple[str, int, str]) -> None:
        # Called a million times a run: the inspection is built only when sampled.
        slot = self.sample.take()
        if slot is not None:
            self.sample.put(slot, _inspection(row, role, obj))

    def out_of_layout(self, row: Any, role: str, key: str) -> None:
        size = row[FILE_SIZE] if role == ORIGINAL else None
        self.pool.submit(check_out_of_layout, self.store, key, role, document_uuid(row),
                         size, row[IS_ACTIVE])

    def finish(self) -> None:
        for item in self.sample.items:
            self._inspect(item)
        self.pool.drain()

    def close(self) -> None:
        self.pool.close()

    def _inspect(self, item: Inspection) -> None:
        self.inspected += 1
        self.pool.submit(inspect_object, self.inspector, item, self.encryption)

    def _handle(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.errors += 1
        if outcome.checksum is not None:
            checksum = outcome.checksum
            self.checksums[checksum] = self.checksums.get(checksum, 0) + 1
        for finding in outcome.findings:
            self.emit(finding)
        for candidate in outcome.candidates:
            self.confirm(candidate)

    def stats(self) -> dict[str, Any]:
        encrypts = self.inspector.encrypts
        return {
            "mode": self.options.mode,
            "sample_size": 0 if self.options.deep else self.options.sample_size,
            "sample_seed": self.options.seed,
            "objects_inspected": self.inspected,
            "checksums": self.checksums,
            "inspection_errors": self.errors,
            "encryption_checked": encrypts and self.inspected > 0,
            "encryption_note": None if encrypts else LOCAL_STORE_NOTE,
        }


def _inspection(row: Any, role: str, obj: tuple[str, int, str]) -> Inspection:
    return Inspection(obj[0], role, document_uuid(row),
                      row[SHA256] if role == ORIGINAL else None)
