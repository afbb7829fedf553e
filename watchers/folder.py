"""The inbox watcher: notices files, waits until they are written, claims them.

Events (inotify, or polling on network shares) only say where to look; a full
rescan at start and every ``watch_rescan_seconds`` makes sure a missed event, an
overflowing event queue or a folder moved in whole never strands a file.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from pipeline.documents import Actor
from pipeline.intake import Intake, WriterArrived, claim_from_inbox
from pipeline.names import clean_path
from pipeline.runtime import Runtime
from pipeline.spool import SpoolMisplaced
from watchers.filters import is_ignored
from watchers.mounts import filesystem_type, is_network_filesystem
from watchers.settle import SettleTracker
from watchers.writers import Verdict, check_writers

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
# After a failed claim (permissions, a full disk) a file is tried again later,
# not in a tight loop.
RETRY_AFTER_SECONDS = 30.0
# A settled file that a process still holds open for writing is asked about again
# this often (one open and one fcntl each time).
OPEN_RECHECK_SECONDS = 1.0


class _Events(FileSystemEventHandler):
    """Hands every path an event mentions to the watcher loop."""

    def __init__(self, paths: queue.Queue[tuple[str, bool]]):
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        path = getattr(event, "dest_path", "") or event.src_path
        self.paths.put((os.fsdecode(path), event.is_directory))


class InboxWatcher:
    def __init__(self, runtime: Runtime, inboxes: list[Path],
                 enqueue: Callable[[uuid.UUID], None]):
        self.runtime = runtime
        self.settings = runtime.settings
        self.inboxes = [inbox.resolve() for inbox in inboxes]
        self.enqueue = enqueue
        self.actor = Actor.here()
        self.tracker = SettleTracker(self.settings.watch_settle_seconds,
                                     self.settings.watch_empty_settle_seconds)
        self._events: queue.Queue[tuple[str, bool]] = queue.Queue()
        self._retry_after: dict[Path, float] = {}
        self._observer = None

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set."""
        self._prepare()
        self._start_observer()
        next_rescan = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_rescan:
                    self.rescan()
                    next_rescan = time.monotonic() + self.settings.watch_rescan_seconds
                self._drain_events()
                self.claim_settled()
                stop.wait(TICK_SECONDS)
        finally:
            self._stop_observer()

    def _prepare(self) -> None:
        for inbox in self.inboxes:
            inbox.mkdir(parents=True, exist_ok=True)
            self.runtime.spool.ensure_same_filesystem(inbox)
        self.settings.quarantine.mkdir(parents=True, exist_ok=True)

    def _start_observer(self) -> None:
        handler = _Events(self._events)
        polling = self.settings.watch_polling == "always" or (
            self.settings.watch_polling == "auto"
            and any(is_network_filesystem(inbox) for inbox in self.inboxes)
        )
        if polling:
            observer = PollingObserver(timeout=self.settings.watch_poll_interval_seconds)
        else:
            observer = Observer()
        for inbox in self.inboxes:
            observer.schedule(handler, str(inbox), recursive=True)
            log.info("watching inbox=%s mode=%s filesystem=%s", inbox,
                     "polling" if polling else "events", filesystem_type(inbox))
        observer.start()
        self._observer = observer

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    def rescan(self) -> int:
        """Look at every file in every inbox; returns how many were seen."""
        seen = 0
        for inbox in self.inboxes:
            for path in _walk_files(inbox, inbox):
                self.tracker.observe(path)
                seen += 1
        return seen

    def _drain_events(self) -> None:
        while True:
            try:
                raw, is_directory = self._events.get_nowait()
            except queue.Empty:
                return
            path = Path(raw)
            inbox = self._inbox_of(path)
            if inbox is None or is_ignored(path.relative_to(inbox)):
                continue
            if is_directory:
                # A folder moved in whole brings files no event will name.
                for inner in _walk_files(path, inbox):
                    self.tracker.observe(inner)
            else:
                self.tracker.observe(path)

    def claim_settled(self) -> list[uuid.UUID]:
        """Claim every file that has stopped changing; returns the new document ids."""
        claimed = []
        now = time.monotonic()
        for path in self.tracker.settled():
            if self._retry_after.get(path, 0.0) > now:
                continue
            document_id = self._claim(path)
            if document_id is not None:
                claimed.append(document_id)
        return claimed

    def _claim(self, path: Path) -> uuid.UUID | None:
        inbox = self._inbox_of(path)
        intake = Intake(source="watch", original_name=path.name, source_path=str(path))
        # Settled is not enough: a scanner may pause with the file open for longer
        # than any settle interval. The lease is held until the file is in the spool.
        with check_writers(path) as writers:
            if writers.verdict is Verdict.WRITING:
                log.debug("still open for writing path=%s; waiting", clean_path(str(path)))
                self._retry_after[path] = time.monotonic() + OPEN_RECHECK_SECONDS
                return None
            if writers.verdict is Verdict.GONE:
                self.tracker.forget(path)
                return None
            if writers.verdict is Verdict.UNKNOWN:
                log.info("cannot tell whether path=%s is still open for writing (%s); "
                         "taken on the settle interval alone", clean_path(str(path)),
                         writers.reason)
            try:
                document_id = claim_from_inbox(self.runtime, path, intake, self.actor,
                                               writer_waiting=writers.writer_waiting)
            except SpoolMisplaced:
                raise
            except WriterArrived:
                log.debug("opened for writing while claimed path=%s; put back, waiting",
                          clean_path(str(path)))
                return None
            except Exception as error:  # noqa: BLE001 - the watcher must outlive one bad file
                log.error("claim failed path=%s error=%s; retrying in %.0f s",
                          clean_path(str(path)), error, RETRY_AFTER_SECONDS)
                self._retry_after[path] = time.monotonic() + RETRY_AFTER_SECONDS
                return None
        self.tracker.forget(path)
        self._retry_after.pop(path, None)
        if document_id is not None:
            self.enqueue(document_id)
            log.debug("enqueued document_id=%s inbox=%s", document_id, inbox)
        return document_id

    def _inbox_of(self, path: Path) -> Path | None:
        for inbox in self.inboxes:
            if path == inbox or inbox in path.parents:
                return inbox
        return None


def _walk_files(folder: Path, inbox: Path) -> Iterator[Path]:
    """Every candidate file under ``folder``; ignored names and symlinks are skipped."""
    for root, folders, files in os.walk(folder, followlinks=False):
        root_path = Path(root)
        if root_path != inbox and is_ignored(root_path.relative_to(inbox)):
            folders[:] = []
            continue
        folders[:] = [name for name in folders if not is_ignored(Path(name))]
        for name in files:
            if not is_ignored(Path(name)):
                yield root_path / name
