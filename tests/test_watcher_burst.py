"""A burst of 1,000 files, a watcher killed in the middle and an overflowing event queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.db.models import Document
from pipeline.documents import Actor
from pipeline.sweep import SweepResult, settle_unclaimed_rows
from tests.support.private import wait_until
from tests.support.stack import Stack
from workers.celery_app import enqueue_ingest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FILES = 1000
INOTIFY_QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


@pytest.fixture
def tiny_inotify_queue() -> Iterator[None]:
    """Make the kernel's event queue overflow for watchers started meanwhile."""
    try:
        saved = INOTIFY_QUEUE.read_text()
        INOTIFY_QUEUE.write_text("32")
    except OSError as error:
        pytest.skip(f"cannot shrink the inotify queue here: {error}")
    yield
    INOTIFY_QUEUE.write_text(saved)


def start_watcher(stack: Stack, inbox: Path, log: Path) -> subprocess.Popen:
    env = {**stack.env, "SLUICE_WATCH_SETTLE_SECONDS": "0.5",
           "SLUICE_WATCH_RESCAN_SECONDS": "3"}
    return subprocess.Popen([sys.executable, "-m", "cli.main", "watch", str(inbox)],
                            env=env, cwd=stack.root, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


def claimed_from(stack: Stack, inbox: Path) -> int:
    with stack.runtime.session() as session:
        return session.scalar(select(func.count()).select_from(Document).where(
            Document.source_path.startswith(str(inbox) + "/"),
            Document.spool_ref.is_not(None)))


def test_every_file_of_a_burst_is_ingested_once_despite_a_killed_watcher(
        stack: Stack, tiny_inotify_queue: None, fault_report: list) -> None:
    inbox = stack.root / f"burst-{uuid.uuid4().hex[:6]}"
    inbox.mkdir()
    log = stack.root / "watch-burst.log"

    first = start_watcher(stack, inbox, log)
    names = [f"note-{index:04d}.txt" for index in range(FILES)]
    for name in names:
        (inbox / name).write_text(f"Befund {name} {uuid.uuid4()}\n")
    assert wait_until(lambda: claimed_from(stack, inbox) >= FILES // 4, 120)
    first.send_signal(signal.SIGKILL)  # mid-burst, no chance to tidy up
    first.wait()

    second = start_watcher(stack, inbox, log)
    try:
        assert wait_until(lambda: not any(inbox.iterdir()), 180), "files left in the inbox"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    # What the beat sweeper does: a row whose file reached the spool just before the
    # kill is adopted and enqueued, a row whose rename never ran is dropped.
    settled = SweepResult()
    settle_unclaimed_rows(stack.runtime, Actor.here(), 0, settled)
    for document_id in settled.requeue:
        enqueue_ingest(stack.app, document_id)

    with stack.runtime.session() as session:
        rows = session.execute(select(Document.id, Document.original_name).where(
            Document.source_path.startswith(str(inbox) + "/"))).all()
    ids = [row.id for row in rows]
    found = stack.wait(ids, timeout=300)
    stored = sorted(d.original_name for d in found.values() if d.status == "stored")
    lost = len(set(names) - set(stored))
    duplicates = len(stored) - len(set(stored))
    fault = f"watcher SIGKILLed in a 1,000-file burst, inotify overflow ({stack.name})"
    fault_report.append({"fault": fault,
                         "runs": 1, "in": FILES, "stored_once": len(set(stored)) - duplicates,
                         "duplicates": duplicates, "lost": lost})

    assert stored == names
    assert os.listdir(inbox) == []
