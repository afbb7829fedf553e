"""The report of a run: every entry with its outcome, as JSON and CSV, plus a summary.

Rows are streamed from the ledger joined with the documents, so a run of a
million entries is written without holding it in memory. An entry taken as a
document reports the document's status (``stored``, ``duplicate``, ``failed``,
or ``pending`` while a worker has it); others report the ledger's outcome
(``refused``, ``excluded``, ``ignored``, ``unpacked`` for an opened archive).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from pipeline.db.models import Document, MigrationEntry, MigrationRun, utcnow
from pipeline.migration.entries import REFUSED
from pipeline.runtime import Runtime

FIELDS = ("path", "outcome", "document_id", "error_code", "error_message",
          "duplicate_of", "size", "sha256", "mime_type", "source_modified_at")
FINAL_DOCUMENT_STATUSES = {"stored", "duplicate", "failed"}
PENDING = "pending"
# A run that gave up waiting (--timeout) with documents pending is not done.
EXIT_PENDING = 1
ROWS_PER_FETCH = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Summary:
    run_id: str
    source: str
    status: str
    outcomes: Counter[str] = field(default_factory=Counter)
    refused_codes: Counter[str] = field(default_factory=Counter)
    failed_codes: Counter[str] = field(default_factory=Counter)
    entries: int = 0
    bytes_stored: int = 0
    taken_this_pass: int = 0
    elapsed_seconds: float = 0.0
    json_path: str | None = None
    csv_path: str | None = None
    # The run waited for its documents (not --no-wait): pending ones mean it gave up.
    waited: bool = True
    # The walk reached the end of the source (False: --timeout stopped it first).
    walked: bool = True

    @property
    def pending(self) -> int:
        return self.outcomes[PENDING]

    @property
    def exit_code(self) -> int:
        """1 when it gave up waiting with documents pending; 3 when anything was
        refused or failed; else 0 (INTERFACE.md)."""
        if self._gave_up:
            return EXIT_PENDING
        return 3 if self.outcomes[REFUSED] or self.outcomes["failed"] else 0

    @property
    def note(self) -> str | None:
        """What the user must do next, when the run is not complete."""
        if not self._gave_up:
            return None
        if not self.walked:
            return (f"--timeout passed while waiting for room (--max-in-flight) with "
                    f"{self.pending} entries still pending and the rest of the source "
                    "not yet read; run the same command again to continue")
        return (f"{self.pending} entries are still pending (no worker finished them "
                "before --timeout); run the same command again to pick them up")

    @property
    def _gave_up(self) -> bool:
        """--timeout ended the pass with work left: documents pending after the final
        wait, or entries not yet read because there was no room in time."""
        return not self.walked or (self.waited and self.pending > 0)

    def as_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed_seconds
        rate = self.taken_this_pass / elapsed if elapsed else 0.0
        return {
            "run_id": self.run_id, "source": self.source, "status": self.status,
            "entries": self.entries, "outcomes": dict(sorted(self.outcomes.items())),
            "refused": dict(sorted(self.refused_codes.items())),
            "failed": dict(sorted(self.failed_codes.items())),
            "bytes_stored": self.bytes_stored, "taken_this_pass": self.taken_this_pass,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "files_per_second": round(rate, 2),
            "pending": self.pending, "note": self.note,
            "report_json": self.json_path, "report_csv": self.csv_path,
            "exit_code": self.exit_code,
        }

    def lines(self) -> list[str]:
        counts = ", ".join(f"{count} {outcome}" for outcome, count
                           in sorted(self.outcomes.items()))
        lines = [f"migration {self.run_id} of {self.source}: {self.status}",
                 f"  {self.entries} entries: {counts or 'none'}"]
        for label, codes in (("refused", self.refused_codes),
                             ("failed", self.failed_codes)):
            if codes:
                lines.append(f"  {label}: " + ", ".join(
                    f"{code} {count}" for code, count in sorted(codes.items())))
        if self.note:
            lines.append(f"  {self.note}")
        lines.append(f"  report: {self.json_path}")
        lines.append(f"          {self.csv_path}")
        return lines


def write_report(runtime: Runtime, run_id: Any, folder: Path, elapsed: float,
                 taken_this_pass: int, waited: bool = True,
                 walked: bool = True) -> Summary:
    """Write the run's JSON and CSV reports into ``folder``; return their summary."""
    with runtime.session() as session:
        run = session.get(MigrationRun, run_id, populate_existing=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"migration-{run.id}-{stamp}.json"
    csv_path = folder / f"migration-{run.id}-{stamp}.csv"
    summary = Summary(str(run.id), run.source, run.status,
                      taken_this_pass=taken_this_pass, elapsed_seconds=elapsed,
                      waited=waited, walked=walked, json_path=str(json_path),
                      csv_path=str(csv_path))

    with json_path.open("w", encoding="utf-8") as as_json, \
            csv_path.open("w", encoding="utf-8", newline="") as as_csv:
        table = csv.DictWriter(as_csv, fieldnames=FIELDS)
        table.writeheader()
        _open_json(as_json, run)
        for index, row in enumerate(_rows(runtime, run.id)):
            _count(summary, row)
            as_json.write(("," if index else "") + "\n    "
                          + json.dumps(row, ensure_ascii=False))
            table.writerow(_spreadsheet_safe(row))
        as_json.write("\n  ],\n  \"summary\": ")
        as_json.write(json.dumps(summary.as_dict(), ensure_ascii=False))
        as_json.write("\n}\n")
    return summary


def _open_json(out: TextIO, run: MigrationRun) -> None:
    header = {"run_id": str(run.id), "source": run.source, "options": run.options,
              "status": run.status, "passes": run.passes,
              "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at)}
    out.write("{\n")
    for name, value in header.items():
        out.write(f"  {json.dumps(name)}: {json.dumps(value, ensure_ascii=False)},\n")
    out.write('  "entries": [')


def _rows(runtime: Runtime, run_id: Any) -> Any:
    query = (
        select(MigrationEntry.path, MigrationEntry.outcome, MigrationEntry.document_id,
               MigrationEntry.error_code, MigrationEntry.error_message,
               MigrationEntry.size, MigrationEntry.source_modified_at, Document.status,
               Document.error_code.label("document_error_code"),
               Document.error_message.label("document_error_message"),
               Document.duplicate_of, Document.sha256, Document.mime_type,
               Document.file_size)
        .outerjoin(Document, Document.id == MigrationEntry.document_id)
        .where(MigrationEntry.run_id == run_id)
        .order_by(MigrationEntry.id)
    )
    with runtime.engine.connect() as connection:
        result = connection.execution_options(yield_per=ROWS_PER_FETCH).execute(query)
        for row in result:
            yield _entry_row(row)


def _entry_row(row: Any) -> dict[str, Any]:
    outcome = row.outcome
    if row.status is not None:
        outcome = row.status if row.status in FINAL_DOCUMENT_STATUSES else PENDING
    return {
        "path": row.path, "outcome": outcome,
        "document_id": str(row.document_id) if row.document_id else None,
        "error_code": row.document_error_code or row.error_code,
        "error_message": row.document_error_message or row.error_message,
        "duplicate_of": str(row.duplicate_of) if row.duplicate_of else None,
        "size": row.file_size if row.file_size is not None else row.size,
        "sha256": row.sha256, "mime_type": row.mime_type,
        "source_modified_at": _iso(row.source_modified_at),
    }


def _spreadsheet_safe(row: dict[str, Any]) -> dict[str, Any]:
    """Names from an archive may start like a formula (``=HYPERLINK(…)``); a
    spreadsheet opening the CSV would run it, so such cells get a leading quote."""
    return {name: f"'{value}" if isinstance(value, str) and value[:1] in FORMULA_STARTS
            else value for name, value in row.items()}


def _count(summary: Summary, row: dict[str, Any]) -> None:
    summary.entries += 1
    summary.outcomes[row["outcome"]] += 1
    if row["outcome"] == REFUSED:
        summary.refused_codes[row["error_code"]] += 1
    elif row["outcome"] == "failed":
        summary.failed_codes[row["error_code"]] += 1
    elif row["outcome"] == "stored":
        summary.bytes_stored += row["size"] or 0


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")
