"""A dry run: what a migration would bring in, with nothing spooled, queued or recorded.

Every entry is read (archives opened as a real run would) and hashed; types
come from the first bytes through ``pipeline.detect``. It reports counts and
bytes per type, whether the type is accepted, duplicates within the source and
against stored documents (by SHA-256), and every entry that would be refused.
Remembering what was seen costs about 100 bytes per unique file.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pipeline.db.models import Document
from pipeline.detect import HEAD_BYTES, detect, is_allowed
from pipeline.errors import CorruptFile
from pipeline.migration.entries import Entry
from pipeline.migration.options import MigrationOptions
from pipeline.migration.safety import Limits
from pipeline.migration.streams import EntryStream
from pipeline.migration.walk import Walk
from pipeline.runtime import Runtime

EXAMPLES = 100
LOOKUP_BATCH = 500
EMPTY = "(empty)"


@dataclass
class TypeCount:
    files: int = 0
    bytes: int = 0


class DryRunSink:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.types: dict[str, TypeCount] = {}
        self.refused: list[dict[str, Any]] = []
        self.skipped: Counter[str] = Counter()
        self.archives = 0
        self.in_source = {"files": 0, "bytes": 0, "examples": []}
        self.stored = {"files": 0, "examples": []}
        self._seen: set[bytes] = set()
        self._lookups: list[tuple[str, str]] = []

    def is_done(self, entry: Entry) -> bool:
        return False

    def skip(self, entry: Entry, outcome: str, reason: str) -> None:
        self.skipped[outcome] += 1

    def refuse(self, entry: Entry, code: str, message: str) -> None:
        self.refused.append({"path": entry.path, "code": code, "message": message})

    def unpacked(self, entry: Entry) -> None:
        self.archives += 1

    def take(self, entry: Entry, stream: EntryStream) -> None:
        digest, size = hashlib.sha256(), 0
        for chunk in stream.chunks():
            digest.update(chunk)
            size += len(chunk)
        mime_type = stream.mime_hint or _detect(stream.head, entry.name, size)
        counted = self.types.setdefault(mime_type, TypeCount())
        counted.files += 1
        counted.bytes += size

        key = digest.digest()[:16]
        if key in self._seen:
            self._note(self.in_source,
                       {"path": entry.path, "sha256": digest.hexdigest()})
            self.in_source["bytes"] += size
            return
        self._seen.add(key)
        self._lookups.append((digest.hexdigest(), entry.path))
        if len(self._lookups) >= LOOKUP_BATCH:
            self._look_up_stored()

    def plan(self, source: Path) -> dict[str, Any]:
        self._look_up_stored()
        allowed = self.runtime.settings.allowed_types
        by_type = [
            {"mime_type": mime, "files": c.files, "bytes": c.bytes,
             "accepted": mime != EMPTY and is_allowed(mime, allowed)}
            for mime, c in sorted(self.types.items(), key=lambda item: -item[1].files)
        ]
        would_fail = {
            "empty_file": sum(t["files"] for t in by_type if t["mime_type"] == EMPTY),
            "unsupported_type": sum(t["files"] for t in by_type
                                    if not t["accepted"] and t["mime_type"] != EMPTY),
        }
        files = sum(t["files"] for t in by_type)
        return {
            "source": str(source), "dry_run": True,
            "would_take": {"files": files, "bytes": sum(t["bytes"] for t in by_type)},
            "by_type": by_type,
            "duplicates_in_source": self.in_source,
            "already_stored": self.stored,
            "would_fail": would_fail,
            "refused": {"count": len(self.refused),
                        "by_code": dict(Counter(r["code"] for r in self.refused)),
                        "entries": self.refused},
            "skipped": dict(self.skipped),
            "archives_opened": self.archives,
            "exit_code": 3 if self.refused or any(would_fail.values()) else 0,
        }

    def _note(self, bucket: dict[str, Any], example: dict[str, Any]) -> None:
        bucket["files"] += 1
        if len(bucket["examples"]) < EXAMPLES:
            bucket["examples"].append(example)

    def _look_up_stored(self) -> None:
        lookups, self._lookups = self._lookups, []
        if not lookups:
            return
        paths = dict(lookups)
        with self.runtime.session() as session:
            found = session.execute(select(Document.sha256, Document.id).where(
                Document.sha256.in_(list(paths)), Document.status == "stored",
                Document.is_active.is_(True)))
            for sha256, document_id in found:
                self._note(self.stored, {"path": paths[sha256],
                                         "document_id": str(document_id)})


def _detect(head: bytes, name: str, size: int) -> str:
    if size == 0:
        return EMPTY
    try:
        # Only zips need the path, and zips reach here with their type already found.
        return detect(Path(name), head[:HEAD_BYTES], name).mime_type
    except CorruptFile:
        return "application/zip"


def dry_run(runtime: Runtime, source: Path,
            options: MigrationOptions) -> dict[str, Any]:
    sink = DryRunSink(runtime)
    limits = Limits.from_settings(runtime.settings)
    walk = Walk(sink, options, limits, runtime.spool.root)
    walk.run(source.resolve())
    return sink.plan(source.resolve())


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan as a person reads it."""
    take = plan["would_take"]
    lines = [f"dry run of {plan['source']}: would take {take['files']} files, "
             f"{take['bytes']} bytes ({plan['archives_opened']} archives opened)"]
    for row in plan["by_type"]:
        flag = "" if row["accepted"] else "   (would fail: not accepted)"
        lines.append(
            f"  {row['files']:>8}  {row['bytes']:>14}  {row['mime_type']}{flag}")
    dup, stored = plan["duplicates_in_source"], plan["already_stored"]
    lines.append(f"  duplicates within the source: {dup['files']} files, "
                 f"{dup['bytes']} bytes (each becomes a `duplicate`)")
    lines.append(f"  already stored in Sluice: {stored['files']} files")
    for outcome, count in sorted(plan["skipped"].items()):
        lines.append(f"  {outcome}: {count}")
    lines.append(f"  would be refused: {plan['refused']['count']}")
    for refusal in plan["refused"]["entries"]:
        lines.append(f"    {refusal['code']:<18} {refusal['path']}  "
                     f"({refusal['message']})")
    return lines
