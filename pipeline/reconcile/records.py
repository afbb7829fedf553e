"""Runs and findings in the database: written by a run, read by reports and the API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from pipeline.db.models import ReconciliationFinding, ReconciliationRun, utcnow
from pipeline.reconcile.findings import KINDS, Finding

INSERT_BATCH = 500
REPORT_BATCH_ROWS = 2000


def start_run(session: Session, **fields: Any) -> int:
    run = ReconciliationRun(status="running", started_at=utcnow(), stats={},
                            finding_counts={}, findings_total=0, reports={}, **fields)
    session.add(run)
    session.commit()
    return run.id


def abandon_stale_runs(session: Session) -> int:
    """Runs still marked running whose process died; called while holding the lock."""
    abandoned = session.execute(
        update(ReconciliationRun).where(ReconciliationRun.status == "running")
        .values(status="abandoned", finished_at=utcnow(),
                error="the process running it stopped before it finished")
    ).rowcount
    session.commit()
    return abandoned


def running_run(session: Session) -> ReconciliationRun | None:
    return session.scalar(select(ReconciliationRun)
                          .where(ReconciliationRun.status == "running")
                          .order_by(ReconciliationRun.id.desc()).limit(1))


def finish_run(session: Session, run_id: int, **fields: Any) -> None:
    session.execute(update(ReconciliationRun).where(ReconciliationRun.id == run_id)
                    .values(finished_at=utcnow(), **fields))
    session.commit()


class Recorder:
    """Keeps every finding of a run, written in batches, and counts them by kind."""

    def __init__(self, sessions: Callable[[], Session], run_id: int):
        self._sessions = sessions
        self._run_id = run_id
        self._batch: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.repairs: Counter[str] = Counter()

    def add(self, finding: Finding, repair_result: str | None) -> None:
        self.counts[finding.kind] += 1
        if repair_result is not None:
            self.repairs[repair_result] += 1
        self._batch.append({
            "run_id": self._run_id, "kind": finding.kind,
            "document_id": finding.document_id, "key": finding.key,
            "role": finding.role, "detail": finding.detail or None,
            "repair": finding.repair, "repair_result": repair_result,
        })
        if len(self._batch) >= INSERT_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        with self._sessions() as session:
            session.execute(insert(ReconciliationFinding), self._batch)
            session.commit()
        self._batch = []

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def counts_by_kind(self) -> dict[str, int]:
        return {kind: self.counts.get(kind, 0) for kind in KINDS}


def run_summary(run: ReconciliationRun) -> dict[str, Any]:
    """A run as reports and the API show it (JSON-ready)."""
    return {
        "id": run.id,
        "status": run.status,
        "trigger": run.trigger,
        "host": run.host,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "store": run.store,
        "bucket": run.bucket,
        "prefix": run.prefix,
        "options": run.options,
        "stats": run.stats,
        "findings_total": run.findings_total,
        "finding_counts": run.finding_counts,
        "reports": run.reports,
        "error": run.error,
    }


def list_runs(session: Session, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Runs, newest first: ``{"count": N, "results": [run, ...]}``."""
    count = session.scalar(select(func.count()).select_from(ReconciliationRun)) or 0
    runs = session.scalars(select(ReconciliationRun)
                           .order_by(ReconciliationRun.started_at.desc(),
                                     ReconciliationRun.id.desc())
                           .limit(limit).offset(offset))
    return {"count": count, "results": [run_summary(run) for run in runs]}


def get_run(session: Session, run_id: int) -> ReconciliationRun | None:
    return session.get(ReconciliationRun, run_id)


def iter_findings(connection: Connection, run_id: int) -> Iterator[dict[str, Any]]:
    """A run's findings in the order they were found, streamed."""
    query = (select(ReconciliationFinding.kind, ReconciliationFinding.document_id,
                    ReconciliationFinding.key, ReconciliationFinding.role,
                    ReconciliationFinding.repair, ReconciliationFinding.repair_result,
                    ReconciliationFinding.detail)
             .where(ReconciliationFinding.run_id == run_id)
             .order_by(ReconciliationFinding.id))
    result = connection.execution_options(yield_per=REPORT_BATCH_ROWS).execute(query)
    try:
        for row in result:
            yield {
                "kind": row.kind,
                "document_id": str(row.document_id) if row.document_id else None,
                "key": row.key, "role": row.role,
                "repair": row.repair, "repair_result": row.repair_result,
                "detail": row.detail or {},
            }
    finally:
        result.close()


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
