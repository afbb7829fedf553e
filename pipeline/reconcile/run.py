"""One reconciliation run, as a named sequence of steps.

    lock       one run at a time across hosts (``lock``); a second start stops here
    record     the run's row, so even a crash leaves a trace
    compare    rows in id order merged with each prefix's listing (``merge``); a
               sample or every object inspected (``inspections``); candidates confirmed
               (``confirm``); repairs applied if asked (``repairs``); every finding
               recorded (``records``)
    finish     the run's counts, then its JSON and CSV reports (``report``)
    summary    one log line an operator can grep
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from pipeline.db.models import utcnow
from pipeline.documents import Actor
from pipeline.reconcile import records
from pipeline.reconcile.confirm import Confirmer
from pipeline.reconcile.findings import KINDS, Finding
from pipeline.reconcile.inspections import Inspections
from pipeline.reconcile.keyspace import Layout
from pipeline.reconcile.listing import iter_objects
from pipeline.reconcile.lock import AlreadyRunning, exclusive_run
from pipeline.reconcile.merge import Clock, Merge, MergeSink
from pipeline.reconcile.options import RunOptions
from pipeline.reconcile.repairs import Repairer
from pipeline.reconcile.report import write_reports
from pipeline.reconcile.table import scan_documents
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

SWITCH_INTERVAL_SECONDS = 0.0005


@dataclass
class RunResult:
    run_id: int
    findings_total: int
    counts: dict[str, int]
    stats: dict[str, Any]
    reports: dict[str, Any]

    @property
    def errors(self) -> int:
        failed_repairs = self.stats["repairs"].get("failed", 0)
        return self.stats.get("inspection_errors", 0) + failed_repairs


def reconcile(runtime: Runtime, options: RunOptions, *,
              enqueue: Callable[[uuid.UUID], None] | None = None,
              on_started: Callable[[int], None] | None = None) -> RunResult:
    """Run one reconciliation; raise AlreadyRunning if another one is running."""
    try:
        with exclusive_run(runtime.engine):
            return _Run(runtime, options, enqueue, on_started).execute()
    except AlreadyRunning as refused:
        raise AlreadyRunning(_who_runs(runtime, refused)) from None


def _who_runs(runtime: Runtime, refused: AlreadyRunning) -> str:
    with runtime.session() as session:
        running = records.running_run(session)
    if running is None:
        return str(refused)
    started = running.started_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return (f"reconciliation run {running.id} started {started} on {running.host} "
            "is running")


class _Run:
    def __init__(self, runtime: Runtime, options: RunOptions,
                 enqueue: Callable[[uuid.UUID], None] | None,
                 on_started: Callable[[int], None] | None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.options = options
        self.enqueue = enqueue
        self.on_started = on_started
        self.store = runtime.store
        self.layout = Layout(self.store.bucket, self.settings.storage.prefix)
        self.actor = Actor.here()
        self.stats: dict[str, Any] = {}

    def execute(self) -> RunResult:
        run_id = self._record()
        started = time.monotonic()
        if self.on_started is not None:
            self.on_started(run_id)
        try:
            recorder = self._compare(run_id)
        except BaseException as error:
            self._fail(run_id, error)
            raise

        self.stats["seconds"] = round(time.monotonic() - started, 3)
        counts = recorder.counts_by_kind()
        with self.runtime.session() as session:
            records.finish_run(session, run_id, status="finished", stats=self.stats,
                               finding_counts=counts, findings_total=recorder.total)
        reports = self._write_reports(run_id)
        result = RunResult(run_id, recorder.total, counts, self.stats, reports)
        _log_summary(result)
        return result

    def _record(self) -> int:
        with self.runtime.session() as session:
            abandoned = records.abandon_stale_runs(session)
            if abandoned:
                log.warning("reconciliation runs abandoned count=%d", abandoned)
            options = {**asdict(self.options), "mode": self.options.mode}
            return records.start_run(
                session, trigger=self.options.trigger, host=self.actor.worker,
                store=self.settings.storage.scheme, bucket=self.layout.bucket,
                prefix=self.layout.prefix, options=options)

    def _compare(self, run_id: int) -> records.Recorder:
        now = utcnow()
        clock = Clock(now, now - timedelta(seconds=self.options.orphan_grace_seconds),
                      now - timedelta(seconds=self.options.stuck_after_seconds))
        recorder = records.Recorder(self.runtime.session, run_id)
        repairer = Repairer(self.runtime.session, self.store, self.actor, run_id,
                            self.options.repairs, self.options.dry_run, self.enqueue)

        def emit(finding: Finding) -> None:
            recorder.add(finding, repairer.apply(finding))

        inspections = Inspections(self.options, self.store, self.settings, emit)
        confirmer = Confirmer(self.runtime.session, self.store, inspections.pool, clock,
                              emit)
        inspections.confirm = confirmer.add
        try:
            counts = self._merge(clock, inspections, confirmer, emit)
            inspections.finish()
            confirmer.flush()
            recorder.flush()
        finally:
            inspections.close()

        self.stats.update(_merge_stats(counts))
        self.stats.update(inspections.stats())
        self.stats["candidates_dropped"] = confirmer.dropped
        self.stats["repairs"] = dict(recorder.repairs)
        return recorder

    def _merge(self, clock: Clock, inspections: Inspections, confirmer: Confirmer,
               emit: Callable[[Finding], None]) -> Any:
        sink = MergeSink(candidate=confirmer.add, finding=emit,
                         matched=inspections.matched(),
                         out_of_layout=inspections.out_of_layout)
        listings = {section.role: iter_objects(self.store, section.prefix)
                    for section in self.layout.sections}
        with self.runtime.engine.connect() as connection, _quick_thread_switches():
            merge = Merge(self.layout, clock, sink)
            return merge.run(scan_documents(connection), listings)

    def _fail(self, run_id: int, error: BaseException) -> None:
        log.error("reconciliation failed run_id=%d error=%s: %s", run_id,
                  type(error).__name__, error)
        try:
            with self.runtime.session() as session:
                records.finish_run(session, run_id, status="failed", stats=self.stats,
                                   error=f"{type(error).__name__}: {error}"[:2000])
        except Exception:  # noqa: BLE001 - the original error is what matters
            log.warning("could not record the failed run run_id=%d", run_id,
                        exc_info=True)

    def _write_reports(self, run_id: int) -> dict[str, Any]:
        reports = write_reports(self.runtime.engine, self.settings, self.store, run_id)
        with self.runtime.session() as session:
            records.finish_run(session, run_id, reports=reports)
        return reports


@contextmanager
def _quick_thread_switches() -> Iterator[None]:
    """Hand the GIL over sooner while the merge runs beside its reading threads.

    The threads reading the bucket and the table wait on sockets many times a
    page; each time, getting the GIL back from the busy merge takes up to the
    switch interval (5 ms by default), and at a million rows those waits added
    ~40 % to a run on a 2-core machine. The setting is per process and is put
    back afterwards.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _merge_stats(counts: Any) -> dict[str, Any]:
    return {
        "rows_scanned": counts.rows_scanned,
        "objects_listed": dict(counts.objects_listed),
        "objects_matched": counts.objects_matched,
        "objects_ignored": counts.objects_ignored,
        "objects_in_grace": counts.objects_in_grace,
        "objects_in_flight": counts.objects_in_flight,
        "keys_in_other_buckets": counts.keys_in_other_buckets,
        "keys_out_of_layout": counts.keys_out_of_layout,
    }


def _log_summary(result: RunResult) -> None:
    stats = result.stats
    kinds = " ".join(f"{kind}={result.counts.get(kind, 0)}" for kind in KINDS)
    log.info("reconciliation finished run_id=%d rows=%d objects=%d inspected=%d "
             "findings=%d %s errors=%d seconds=%.1f", result.run_id,
             stats["rows_scanned"], sum(stats["objects_listed"].values()),
             stats["objects_inspected"], result.findings_total, kinds, result.errors,
             stats["seconds"])
