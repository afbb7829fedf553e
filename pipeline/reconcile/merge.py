"""The merge join: rows in id order against each prefix's objects in key order.

For each row, each prefix's listing is advanced up to ``<section prefix><id>``:
everything before it is named after no row in the table (an orphan unless it is
young or an ignored name), and everything starting with it is named after this
row. What the row expects there is then matched, missing or left over. One pass
over each stream; memory holds one row and one page per prefix.

Findings that a concurrent upload or delete could fake (missing, orphan, deleted
but present, stuck) leave here as candidates, to be confirmed before they count.

This loop runs once per row and object, a million times and more per run, so it
reads rows by position (``table.ID`` ...) and keeps the common case, a live row
whose object is next in the listing, on a short path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.reconcile.findings import (
    DELETED_BUT_PRESENT,
    MISSING_OBJECT,
    ORIGINAL,
    ORPHAN_OBJECT,
    SIZE_MISMATCH,
    STUCK,
    Finding,
)
from pipeline.reconcile.keyspace import Layout, Section, is_ignored_key, named_document
from pipeline.reconcile.s3_listing import ObjectRef
from pipeline.reconcile.table import (
    ATTEMPTS,
    BUCKET,
    FILE_SIZE,
    ID,
    IS_ACTIVE,
    LEASE_UNTIL,
    S3_KEY,
    SPOOLED,
    STATUS,
    THUMBNAIL_KEY,
    UPDATED_AT,
    as_utc,
)

IN_FLIGHT = frozenset({"received", "processing"})


def document_uuid(row: Any) -> uuid.UUID:
    """The row's id as a UUID; rows carry it as text, the form keys are made of."""
    return uuid.UUID(row[ID])


@dataclass
class MergeCounts:
    rows_scanned: int = 0
    objects_listed: dict[str, int] = field(default_factory=dict)
    objects_matched: int = 0
    objects_ignored: int = 0
    objects_in_grace: int = 0
    objects_in_flight: int = 0
    keys_in_other_buckets: int = 0
    keys_out_of_layout: int = 0


@dataclass(frozen=True)
class Clock:
    """The instants a run judges ages against, fixed when it starts."""

    now: datetime
    orphan_before: datetime
    stuck_before: datetime


class MergeSink:
    """Where the merge's results go; the run wires these to its later steps.

    ``matched(row, role, obj)`` sees every object a live stored row accounts for
    (for deep checks or the sample); ``out_of_layout(row, role, key)`` gets the
    keys that do not sort where their id does, to be checked one by one.
    """

    def __init__(self, candidate: Callable[[Finding], None],
                 finding: Callable[[Finding], None],
                 matched: Callable[[Any, str, ObjectRef], None] | None,
                 out_of_layout: Callable[[Any, str, str], None]):
        self.candidate = candidate
        self.finding = finding
        self.matched = matched
        self.out_of_layout = out_of_layout


class _Cursor:
    """A prefix's listing with one object of look-ahead."""

    __slots__ = ("section", "prefix", "role", "key_column", "head", "_objects",
                 "listed")

    def __init__(self, section: Section, objects: Iterable[ObjectRef]):
        self.section = section
        self.prefix = section.prefix
        self.role = section.role
        self.key_column = S3_KEY if section.role == ORIGINAL else THUMBNAIL_KEY
        self._objects: Iterator[ObjectRef] = iter(objects)
        self.listed = 0
        self.head = self.advance()

    def advance(self) -> ObjectRef | None:
        self.head = next(self._objects, None)
        if self.head is not None:
            self.listed += 1
        return self.head

    def take_named(self, base: str) -> list[ObjectRef]:
        """The objects at the head whose keys start with ``base``."""
        named = []
        head = self.head
        while head is not None and head[0].startswith(base):
            named.append(head)
            head = self.advance()
        return named


class Merge:
    def __init__(self, layout: Layout, clock: Clock, sink: MergeSink):
        self.layout = layout
        self.clock = clock
        self.sink = sink
        self._matched = sink.matched
        self.counts = MergeCounts()

    def run(self, rows: Iterable[Any], listings: dict[str, Iterable[ObjectRef]]
            ) -> MergeCounts:
        """Merge ``rows`` (id order) with one listing per section (key order)."""
        cursors = [_Cursor(section, listings[section.role])
                   for section in self.layout.sections]
        bucket = self.layout.bucket
        scanned = 0
        for row in rows:
            scanned += 1
            status = row[STATUS]
            # A live stored row in this bucket: the only kind whose objects may
            # take the short path.
            live = (status == "stored" and row[IS_ACTIVE]
                    and (row[BUCKET] is None or row[BUCKET] == bucket))
            for cursor in cursors:
                self._meet(row, cursor, live)
            if status in IN_FLIGHT:
                self._check_stuck(row)

        self.counts.rows_scanned = scanned
        for cursor in cursors:
            while cursor.head is not None:
                self._unaccounted(cursor.head, cursor.section, None)
                cursor.advance()
            self.counts.objects_listed[cursor.role] = cursor.listed
        return self.counts

    def _meet(self, row: Any, cursor: _Cursor, live: bool) -> None:
        """Settle the objects named after ``row`` under one prefix, and its own key."""
        base = cursor.prefix + row[ID]
        key = row[cursor.key_column]
        head = cursor.head
        if live and head is not None and head[0] == key and key.startswith(base):
            # Nearly every row: the next object is exactly the one it expects.
            after = cursor.advance()
            if after is None or not after[0].startswith(base):
                self._present(row, cursor.role, head)
                return
            self._settle(row, cursor.section, key, [head, *cursor.take_named(base)])
            return

        while head is not None and head[0] < base:
            self._unaccounted(head, cursor.section, None)
            head = cursor.advance()
        named = []
        if head is not None and head[0].startswith(base):
            named = cursor.take_named(base)
        if key is not None and not self._sorts_here(row, key, base, cursor.role):
            key = None
        if named or key is not None:
            self._settle(row, cursor.section, key, named)

    def _sorts_here(self, row: Any, key: str, base: str, role: str) -> bool:
        """True if ``key`` is in this bucket among the objects named after the row.

        Other keys (an older prefix, a hand-edited row) are checked one by one
        with a HEAD instead; keys in other buckets are only counted.
        """
        if row[BUCKET] is not None and row[BUCKET] != self.layout.bucket:
            self.counts.keys_in_other_buckets += 1
            return False
        if key.startswith(base):
            return True
        self.counts.keys_out_of_layout += 1
        if row[STATUS] not in IN_FLIGHT:
            self.sink.out_of_layout(row, role, key)
        return False

    def _settle(self, row: Any, section: Section, key: str | None,
                named: list[ObjectRef]) -> None:
        if row[STATUS] in IN_FLIGHT:
            # An upload in progress: its row says so, whatever the object's age.
            self.counts.objects_in_flight += len(named)
            return

        found = False
        for obj in named:
            if obj[0] == key:
                found = True
                self._present(row, section.role, obj)
            else:
                self._unaccounted(obj, section, row)

        if key is not None and not found and row[IS_ACTIVE] and row[STATUS] == "stored":
            size = row[FILE_SIZE] if section.role == ORIGINAL else None
            self.sink.candidate(Finding(MISSING_OBJECT, document_uuid(row), key,
                                        section.role, {"expected_size": size}))

    def _present(self, row: Any, role: str, obj: ObjectRef) -> None:
        if not row[IS_ACTIVE]:
            self.sink.candidate(Finding(DELETED_BUT_PRESENT, document_uuid(row), obj[0],
                                        role, {"size": obj[1]}))
            return
        if row[STATUS] != "stored":
            return

        self.counts.objects_matched += 1
        expected = row[FILE_SIZE]
        if role == ORIGINAL and expected is not None and obj[1] != expected:
            self.sink.finding(Finding(SIZE_MISMATCH, document_uuid(row), obj[0], role,
                                      {"expected_size": expected, "size": obj[1]}))
        if self._matched is not None:
            self._matched(row, role, obj)

    def _unaccounted(self, obj: ObjectRef, section: Section, row: Any | None) -> None:
        """An object no row expects: ignored, too young to judge, or an orphan."""
        key, size, modified = obj
        if is_ignored_key(key, section):
            self.counts.objects_ignored += 1
            return
        if _modified_at(modified) > self.clock.orphan_before:
            self.counts.objects_in_grace += 1
            return

        detail: dict[str, Any] = {"size": size, "last_modified": modified}
        document_id = None
        if row is not None:
            document_id = document_uuid(row)
            detail["document_status"] = row[STATUS]
            detail["document_is_active"] = row[IS_ACTIVE]
        else:
            named = named_document(key, section)
            if named is not None:
                detail["named_for"] = str(named)
        self.sink.candidate(Finding(ORPHAN_OBJECT, document_id, key, section.role,
                                    detail))

    def _check_stuck(self, row: Any) -> None:
        if is_stuck(row, self.clock):
            self.sink.candidate(Finding(STUCK, document_uuid(row), None, None,
                                        stuck_detail(row)))


def is_stuck(row: Any, clock: Clock) -> bool:
    """Waiting longer than the threshold, and not under a live worker's lease."""
    if not row[IS_ACTIVE] or row[STATUS] not in IN_FLIGHT:
        return False
    if as_utc(row[UPDATED_AT]) >= clock.stuck_before:
        return False
    lease_until = as_utc(row[LEASE_UNTIL])
    # A live worker holds the lease: it is slow, not stuck.
    return not (row[STATUS] == "processing" and lease_until is not None
                and lease_until >= clock.now)


def stuck_detail(row: Any) -> dict[str, Any]:
    return {
        "status": row[STATUS],
        "updated_at": _iso(as_utc(row[UPDATED_AT])),
        "lease_until": _iso(as_utc(row[LEASE_UNTIL])),
        "attempts": row[ATTEMPTS],
        "spooled": bool(row[SPOOLED]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _modified_at(text: str) -> datetime:
    # S3 and the local store both give ISO-8601 in UTC; an object without a
    # readable date is judged as old rather than hidden for ever.
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
