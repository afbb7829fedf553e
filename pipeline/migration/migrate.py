"""A migration run: every entry of the source spooled, enqueued and recorded once.

    open the run       derive its id; resume it if it exists (re-enqueue what waits)
    walk the source    each file streamed into the spool as a ``received`` document,
                       enqueued, recorded; refusals and skips recorded with reasons;
                       at most ``max_in_flight`` documents of the run not yet final
    wait               (unless told not to) until every document is final

``timeout`` bounds all the waiting of a pass, for room under ``max_in_flight``
as for the final wait: when it passes, spooling stops, the run is ``timed_out``
and the same command run again continues.
    report             JSON and CSV in ``var_dir/reports``, and a summary

Ctrl-C or a crash leaves a run that the same command resumes: what was recorded
or taken is not taken again (see ``ledger``).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from celery import Celery

from pipeline.documents import Actor
from pipeline.intake import Intake, receive_stream
from pipeline.migration.entries import REFUSED, UNPACKED, Entry
from pipeline.migration.ledger import UNFINISHED, RunLedger, run_id_for
from pipeline.migration.options import MigrationOptions
from pipeline.migration.progress import Progress
from pipeline.migration.report import Summary, write_report
from pipeline.migration.safety import Limits
from pipeline.migration.sources.folder import measure
from pipeline.migration.streams import EntryStream
from pipeline.migration.throttle import InFlightLimit, OutOfTime
from pipeline.migration.walk import SOURCE_ARCHIVE_KEY, Walk
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 0.5
# Silence this long while waiting usually means no worker is running.
NO_PROGRESS_HINT_SECONDS = 15.0
# The run's status when --timeout ended the wait with documents still pending.
TIMED_OUT = "timed_out"


class StopRequested(KeyboardInterrupt):
    """Raised after ``stop_after`` documents, as Ctrl-C would be (for tests)."""


@dataclass(frozen=True)
class MigrationRequest:
    source: Path
    options: MigrationOptions
    max_in_flight: int
    wait: bool = True
    timeout: float | None = None
    stop_after: int | None = None


class MigrationSink:
    """Spools each file as a document, enqueues it, and records every outcome."""

    def __init__(self, runtime: Runtime, app: Celery, ledger: RunLedger,
                 request: MigrationRequest, progress: Progress,
                 deadline: float | None = None):
        self.runtime = runtime
        self.app = app
        self.ledger = ledger
        self.request = request
        self.progress = progress
        self.actor = Actor.here()
        # A resumed run's documents still pending hold room already.
        self.throttle = InFlightLimit(request.max_in_flight, self._count_unfinished,
                                      deadline=deadline,
                                      in_flight=ledger.count_documents(UNFINISHED))
        self.taken = 0
        self.done_bytes = 0

    def is_done(self, entry: Entry) -> bool:
        done = self.ledger.is_done(entry)
        if done:
            self._advance(entry)
        return done

    def skip(self, entry: Entry, outcome: str, reason: str) -> None:
        self.ledger.record(entry, outcome, message=reason)
        self.progress.counted(skipped=1)
        self._advance(entry)

    def refuse(self, entry: Entry, code: str, message: str) -> None:
        log.info("refused path=%s code=%s reason=%s", entry.path, code, message)
        self.ledger.record(entry, REFUSED, code=code, message=message)
        self.progress.counted(refused=1)
        self._advance(entry)

    def unpacked(self, entry: Entry) -> None:
        self.ledger.record(entry, UNPACKED)
        self._advance(entry)

    def take(self, entry: Entry, stream: EntryStream) -> None:
        from workers.celery_app import enqueue_ingest

        self.throttle.wait_for_room()
        category, tags = self.request.options.labels(entry.path)
        intake = Intake(source="migration", original_name=entry.name,
                        source_path=entry.path, category=category, tags=tags,
                        uploaded_by=self.request.options.uploaded_by,
                        source_modified_at=entry.modified_at,
                        migration_run_id=self.ledger.id)
        document = receive_stream(self.runtime, stream.chunks(), intake, self.actor,
                                  document_id=self.ledger.document_id(entry))
        enqueue_ingest(self.app, document.id, document.spool_ref)
        self.ledger.record(entry, "received", document_id=document.id,
                           size=document.file_size)
        log.debug("taken path=%s document_id=%s", entry.path, document.id)

        self.throttle.taken()
        self.taken += 1
        self.progress.taken(document.file_size or 0)
        self._advance(entry)
        if self.request.stop_after and self.taken >= self.request.stop_after:
            raise StopRequested(f"stopped after {self.taken} documents")

    def _advance(self, entry: Entry) -> None:
        if entry.depth == 0 and entry.size and entry.key != SOURCE_ARCHIVE_KEY:
            self.done_bytes += entry.size

    def _count_unfinished(self) -> int:
        self.ledger.heartbeat()
        in_flight = self.ledger.count_documents(UNFINISHED)
        self.progress.update(in_flight=in_flight,
                             failed=self.ledger.count_documents(("failed",)))
        return in_flight


def run_migration(runtime: Runtime, app: Celery, request: MigrationRequest,
                  out: TextIO = sys.stderr, on_terminal: bool = False) -> Summary:
    """Migrate ``request.source``; returns the summary of the report it wrote."""
    from workers.celery_app import enqueue_ingest

    source = request.source.resolve()
    deadline = None if request.timeout is None else time.monotonic() + request.timeout
    runtime.settings.spool.mkdir(parents=True, exist_ok=True)
    ledger = RunLedger.open(runtime, run_id_for(source, request.options.fingerprint()),
                            source, request.options.fingerprint())
    for document_id in ledger.waiting_documents():
        enqueue_ingest(app, document_id)

    progress = Progress(out, on_terminal)
    sink = MigrationSink(runtime, app, ledger, request, progress, deadline)
    walk = Walk(sink, request.options, Limits.from_settings(runtime.settings),
                runtime.spool.root)
    progress.fraction = _fraction(source, walk, sink)

    all_final = walked = True
    try:
        with progress:
            try:
                walk.run(source)
            except OutOfTime as stop:
                log.warning("gave up waiting for room; spooling stopped (%s)", stop)
                walked = False
            ledger.flush()
            if request.wait and walked:
                all_final = _wait_until_final(ledger, progress, deadline)
    except BaseException:
        _finish_quietly(ledger)
        raise
    ledger.finish("finished" if all_final and walked else TIMED_OUT)
    summary = write_report(runtime, ledger.id, runtime.settings.var_dir / "reports",
                           progress.elapsed, sink.taken, waited=request.wait,
                           walked=walked)
    log.info("migration done run_id=%s entries=%d exit_code=%d", ledger.id,
             summary.entries, summary.exit_code)
    return summary


def _fraction(source: Path, walk: Walk, sink: MigrationSink):  # noqa: ANN202
    """How far the walk is: bytes of a folder done, or the position in an archive."""
    if source.is_dir():
        _, total = measure(source)
        return lambda: sink.done_bytes / total if total else None
    size = source.stat().st_size

    def position() -> float | None:
        handle = walk.source_handle
        if handle is None or handle.closed or not size:
            return None
        return handle.tell() / size

    return position


def _finish_quietly(ledger: RunLedger) -> None:
    """Mark the run interrupted; the error that stopped it matters more than this."""
    try:
        ledger.finish("interrupted")
    except Exception:  # noqa: BLE001 - the original error is re-raised by the caller
        log.warning("could not record the interruption run_id=%s", ledger.id,
                    exc_info=True)


def _wait_until_final(ledger: RunLedger, progress: Progress,
                      deadline: float | None) -> bool:
    """Wait until every document of the run is final (True), or ``deadline`` (False)."""
    last_change = time.monotonic()
    last_count, hinted = -1, False
    while True:
        ledger.heartbeat()
        in_flight = ledger.count_documents(UNFINISHED)
        progress.update(in_flight=in_flight, failed=ledger.count_documents(("failed",)),
                        waiting=True)
        if in_flight == 0:
            return True
        now = time.monotonic()
        if in_flight != last_count:
            last_count, last_change = in_flight, now
        elif not hinted and now - last_change > NO_PROGRESS_HINT_SECONDS:
            log.warning("no progress for a while; is a worker running "
                        "(`sluice worker` or `sluice up`)?")
            hinted = True
        if deadline is not None and now >= deadline:
            log.warning("gave up waiting in_flight=%d", in_flight)
            return False
        time.sleep(WAIT_POLL_SECONDS)
