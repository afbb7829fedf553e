"""Rejected files, kept with the reason beside them; nothing rejected is deleted.

Each file is kept as ``<document id>-<name>`` with ``<document id>-<name>.error.json``
beside it. The name is cut (on a character, keeping its extension) so that both fit
in the filesystem's 255 bytes; the whole original name is in the ``.error.json``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pipeline.db.models import Document, utcnow
from pipeline.names import NAME_MAX_BYTES, safe_file_name
from pipeline.spool import Spool

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".error.json"


def quarantine_name(document: Document) -> str:
    """``<document id>-<name>``, short enough that its ``.error.json`` fits too."""
    prefix = f"{document.id}-"
    room = NAME_MAX_BYTES - len(prefix.encode()) - len(SIDECAR_SUFFIX.encode())
    return prefix + safe_file_name(document.original_name, room)


def quarantine(spool: Spool, document: Document, quarantine_dir: Path, code: str,
               message: str, facts: dict[str, Any]) -> str | None:
    """Move the document's spooled file to quarantine with a ``.error.json`` beside it.

    Returns the quarantined file's path, or None when there was no file to move.
    Never raises: the caller must still give the document its final status. A
    file that cannot be moved stays in the spool (and the error is logged); a
    sidecar that cannot be written leaves the file in quarantine without it.
    """
    target = quarantine_dir / quarantine_name(document)
    try:
        if document.spool_ref is None or not spool.move_out(document.spool_ref, target):
            return None
    except Exception:  # noqa: BLE001 - the document must still end failed
        log.error("could not quarantine document_id=%s code=%s; the file stays in the "
                  "spool as spool_ref=%s", document.id, code, document.spool_ref,
                  exc_info=True)
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
    try:
        _write_sidecar(target, document, record)
    except Exception:  # noqa: BLE001 - the file is kept; its reason is in the database
        log.error("could not write the .error.json of document_id=%s path=%s",
                  document.id, target, exc_info=True)
    log.info("quarantined document_id=%s code=%s path=%s", document.id, code, target)
    return str(target)


def _write_sidecar(target: Path, document: Document, record: dict[str, Any]) -> None:
    sidecar = target.with_name(target.name + SIDECAR_SUFFIX)
    # Named by the document id only, so its length does not depend on the name.
    partial = target.with_name(f".{document.id}.{os.getpid()}{SIDECAR_SUFFIX}.part")
    try:
        partial.write_text(json.dumps(record, indent=2, ensure_ascii=False))
        os.replace(partial, sidecar)
    finally:
        partial.unlink(missing_ok=True)
