"""What a reconciliation can find, and the repair each kind of finding has."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

MISSING_OBJECT = "missing_object"
ORPHAN_OBJECT = "orphan_object"
SIZE_MISMATCH = "size_mismatch"
CHECKSUM_MISMATCH = "checksum_mismatch"
DELETED_BUT_PRESENT = "deleted_but_present"
STUCK = "stuck"
UNENCRYPTED_OBJECT = "unencrypted_object"

KINDS = (MISSING_OBJECT, ORPHAN_OBJECT, SIZE_MISMATCH, CHECKSUM_MISMATCH,
         DELETED_BUT_PRESENT, STUCK, UNENCRYPTED_OBJECT)

# The kinds a run may repair, and how. Orphans are deleted only when the operator
# names them: an object nobody accounts for may still be someone's only copy.
REPAIRS = {
    STUCK: "requeue",
    DELETED_BUT_PRESENT: "delete_object",
    MISSING_OBJECT: "mark_missing",
    ORPHAN_OBJECT: "delete_object",
    UNENCRYPTED_OBJECT: "reencrypt",
}
SAFE_REPAIRS = (STUCK, DELETED_BUT_PRESENT, MISSING_OBJECT, UNENCRYPTED_OBJECT)

ORIGINAL = "original"
THUMBNAIL = "thumbnail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference; ``document_id`` and ``key`` are set wherever there is one."""

    kind: str
    document_id: uuid.UUID | None = None
    key: str | None = None
    role: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def repair(self) -> str | None:
        return REPAIRS.get(self.kind)

    @property
    def named_id(self) -> uuid.UUID | None:
        """The document this finding is about, or the one its key is named after."""
        named = self.detail.get("named_for")
        return self.document_id or (uuid.UUID(named) if named else None)


def expand_repairs(asked: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``all`` means every safe repair; orphans must still be named on their own."""
    kinds: list[str] = []
    for name in asked:
        for kind in SAFE_REPAIRS if name == "all" else (name,):
            if kind not in REPAIRS:
                raise ValueError(f"no repair for {kind!r}; choose from "
                                 f"all, {', '.join(REPAIRS)}")
            if kind not in kinds:
                kinds.append(kind)
    return tuple(kinds)


# What an operator can do about each kind, printed beside every finding.
ADVICE = {
    MISSING_OBJECT: "restore the object from a backup or ingest the source file again; "
                    "--repair missing_object marks the document (error missing_object)",
    ORPHAN_OBJECT: "no document accounts for this object: check it, then delete it "
                   "by hand or with --repair orphan_object",
    SIZE_MISMATCH: "the object is not the bytes that were stored: "
                   "restore it from a backup",
    CHECKSUM_MISMATCH: "the object's content differs from the stored document's "
                       "SHA-256: restore it from a backup",
    DELETED_BUT_PRESENT: "the document was deleted but its object remains: "
                         "--repair deleted_but_present deletes it",
    STUCK: "the document has waited too long for a worker: check that workers run; "
           "--repair stuck enqueues it again",
    UNENCRYPTED_OBJECT: "the object lacks the expected server-side encryption: "
                        "--repair unencrypted_object copies it onto itself with the "
                        "expected settings (same bytes, checked after the copy)",
}
