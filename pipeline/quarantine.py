"""Rejected files, kept with the reason beside them; nothing rejected is deleted."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pipeline.db.models import Document, utcnow
from pipeline.names import safe_file_name
from pipeline.spool import Spool

log = logging.getLogger(__name__)


def quarantine(spool: Spool, document: Document, quarantine_dir: Path, code: str,
               message: str, facts: dict[str, Any]) -> str | None:
    """Move the document's spooled file to quarantine with a ``.error.json`` beside it.

    Returns the quarantined file's path, or None when there was no file to move.
    """
    target = quarantine_dir / f"{document.id}-{safe_file_name(document.original_name)}"
    if document.spool_ref is None or not spool.move_out(document.spool_ref, target):
        return None

    record = {
        "document_id": str(document.id),
        "original_name": document.original_name,
        "source": document.source,
        "source_path": document.source_path,
        "error": {"code": code, "message": message},
        "quarantined_at": utcnow().isoformat(),
        **{key: value for key, value in facts.items() if value is not None},
    }
    sidecar = target.with_name(target.name + ".error.json")
    partial = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    os.replace(partial, sidecar)
    log.info("quarantined document_id=%s code=%s path=%s", document.id, code, target)
    return str(target)
