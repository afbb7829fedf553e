"""Reports of a run, JSON and CSV, built from what the database keeps of it.

The same streams feed the files written after each run, ``sluice reconcile``'s
output and the API, so all three always agree; findings are streamed, never
held, so a run with millions of them is written in constant memory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from pipeline.reconcile.findings import ADVICE
from pipeline.reconcile.records import get_run, iter_findings, run_summary
from pipeline.settings import Settings
from pipeline.storage import ObjectStore

log = logging.getLogger(__name__)

FORMATS = ("json", "csv")
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv"}
CSV_COLUMNS = ("run_id", "kind", "document_id", "key", "role", "repair",
               "repair_result", "advice", "detail")
CSV_FLUSH_ROWS = 500
HASH_CHUNK_BYTES = 1024 * 1024


def json_chunks(summary: dict[str, Any],
                findings: Iterable[dict[str, Any]]) -> Iterator[str]:
    yield '{"run": ' + json.dumps(summary, ensure_ascii=False) + ',\n "findings": ['
    separator = "\n  "
    for finding in findings:
        yield separator + json.dumps({**finding, "advice": ADVICE.get(finding["kind"])},
                                     ensure_ascii=False)
        separator = ",\n  "
    yield "\n]}\n"


def csv_chunks(run_id: int, findings: Iterable[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for count, finding in enumerate(findings, start=1):
        writer.writerow((
            run_id, finding["kind"], finding["document_id"] or "",
            finding["key"] or "", finding["role"] or "", finding["repair"] or "",
            finding["repair_result"] or "", ADVICE.get(finding["kind"], ""),
            json.dumps(finding["detail"], ensure_ascii=False, sort_keys=True),
        ))
        if count % CSV_FLUSH_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def report_chunks(engine: Engine, run_id: int, fmt: str) -> Iterator[str] | None:
    """The report of run ``run_id`` as text chunks; None if there is no such run."""
    if fmt not in FORMATS:
        raise ValueError(f"report format must be one of {', '.join(FORMATS)}")
    with sessionmaker(engine)() as session:
        run = get_run(session, run_id)
        if run is None:
            return None
        summary = run_summary(run)

    def generate() -> Iterator[str]:
        with engine.connect() as connection:
            findings = iter_findings(connection, run_id)
            if fmt == "json":
                yield from json_chunks(summary, findings)
            else:
                yield from csv_chunks(run_id, findings)

    return generate()


def write_reports(engine: Engine, settings: Settings, store: ObjectStore,
                  run_id: int) -> dict[str, Any]:
    """Write the run's JSON and CSV reports to the reports folder (and the bucket)."""
    folder = settings.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    for fmt in FORMATS:
        path = folder / f"reconciliation-{run_id:06d}.{fmt}"
        _write_atomically(path, report_chunks(engine, run_id, fmt) or iter(()))
        written[fmt] = str(path)
        if settings.reports_prefix:
            written[f"{fmt}_key"] = _upload(store, settings, path, fmt, run_id)
    return written


def _write_atomically(path: Path, chunks: Iterable[str]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _upload(store: ObjectStore, settings: Settings, path: Path, fmt: str,
            run_id: int) -> str:
    folder = settings.reports_prefix.strip("/")
    key = f"{settings.storage.prefix}{folder}/{path.name}"
    digest = hashlib.sha256()
    with path.open("rb") as content:
        while chunk := content.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    store.put_file(key, path, size=path.stat().st_size, sha256=digest.hexdigest(),
                   content_type=CONTENT_TYPES[fmt], metadata={"run-id": str(run_id)})
    log.info("report uploaded run_id=%d s3_key=%s", run_id, key)
    return key

