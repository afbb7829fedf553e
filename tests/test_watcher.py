"""The inbox watcher: files are taken once, complete, and never stranded."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline import documents
from pipeline.db.models import Document
from pipeline.documents import Actor
from pipeline.intake import Intake, WriterArrived, claim_from_inbox
from pipeline.recovery import recover
from pipeline.runtime import Runtime
from tests.conftest import CORPUS
from tests.support.private import wait_until
from tests.support.stack import Stack
from watchers import writers
from watchers.folder import InboxWatcher
from workers.celery_app import enqueue_ingest

PDF = CORPUS / "pdf" / "pdflatex-4-pages.pdf"
SETTLE = 0.6


def unique_pdf_bytes() -> bytes:
    return PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode()


class RunningWatcher:
    def __init__(self, stack: Stack, inbox: Path, **overrides: object):
        settings = stack.settings.model_copy(update={
            "watch_settle_seconds": SETTLE, "watch_rescan_seconds": 1.0, **overrides})
        self.stack = stack
        self.inbox = inbox
        self.runtime = Runtime(settings)
        self.claimed: list[uuid.UUID] = []
        self.watcher = InboxWatcher(self.runtime, [inbox], self._enqueue)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,), daemon=True)

    def _enqueue(self, document_id: uuid.UUID) -> None:
        self.claimed.append(document_id)
        enqueue_ingest(self.stack.app, document_id)

    def __enter__(self) -> RunningWatcher:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.runtime.close()

    def wait_for_claims(self, count: int, timeout: float = 30.0) -> list[uuid.UUID]:
        deadline = time.monotonic() + timeout
        while len(self.claimed) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.claimed)


@pytest.fixture
def inbox(stack: Stack) -> Iterator[Path]:
    # Inside the stack's root: the spool must be on the inbox's filesystem.
    folder = stack.root / f"inbox-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    yield folder


def test_a_file_written_slowly_is_taken_once_and_complete(stack: Stack, inbox: Path) -> None:
    content = unique_pdf_bytes()
    with RunningWatcher(stack, inbox) as running:
        target = inbox / "slow-scan.pdf"
        with target.open("wb") as out:
            for start in range(0, len(content), len(content) // 5 + 1):
                out.write(content[start:start + len(content) // 5 + 1])
                out.flush()
                time.sleep(SETTLE / 2)  # pauses shorter than the settle interval
        ids = running.wait_for_claims(1)
        time.sleep(SETTLE * 3)

    document = assert_taken_once_and_whole(stack, running, ids, content, target)
    assert document.source == "watch" and document.original_name == "slow-scan.pdf"


# A scanner writing a multi-page document: it keeps the file open, writes the pages
# scanned so far, pauses while it scans the next one, writes the rest and closes.
PAUSING_WRITER = """
import sys, time
source, target, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(source, "rb").read()
half = len(data) // 2
with open(target, "wb") as out:
    out.write(data[:half])
    out.flush()
    print("pausing", flush=True)
    time.sleep(pause)
    out.write(data[half:])
"""


def test_a_writer_pausing_with_the_file_open_is_waited_for(stack: Stack, inbox: Path) -> None:
    content = unique_pdf_bytes() * 20
    source = stack.root / f"scan-{uuid.uuid4().hex[:8]}.pdf"
    source.write_bytes(content)
    target = inbox / "paused-scan.pdf"
    pause = SETTLE * 6  # far longer than the settle interval
    with RunningWatcher(stack, inbox) as running:
        writer = subprocess.Popen([sys.executable, "-c", PAUSING_WRITER, str(source),
                                   str(target), str(pause)], stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"pausing\n"
        time.sleep(pause - SETTLE)
        assert running.claimed == [] and target.exists(), "taken while still open for writing"
        assert writer.wait(timeout=30) == 0
        ids = running.wait_for_claims(1)
        time.sleep(SETTLE * 3)

    assert_taken_once_and_whole(stack, running, ids, content, target)


APPENDING_WRITER = """
import sys
with open(sys.argv[1], "ab") as out:
    out.write(b"second part\\n")
"""


def test_a_writer_opening_the_file_during_its_claim_finds_it_in_the_inbox(
        stack: Stack, inbox: Path) -> None:
    target = inbox / "reopened.txt"
    target.write_bytes(b"first part\n")
    intake = Intake(source="watch", original_name=target.name, source_path=str(target))
    with writers.check_writers(target) as check:
        assert check.verdict is writers.Verdict.NO_WRITERS
        writer = subprocess.Popen([sys.executable, "-c", APPENDING_WRITER, str(target)])
        assert wait_until(check.writer_waiting, 10), "the writer's open did not wait for us"
        with pytest.raises(WriterArrived):
            claim_from_inbox(stack.runtime, target, intake, Actor.here(),
                             writer_waiting=check.writer_waiting)
    assert writer.wait(timeout=10) == 0
    assert target.read_bytes() == b"first part\nsecond part\n"
    with stack.runtime.session() as session:
        rows = session.scalars(select(Document.id).where(
            Document.source_path == str(target))).all()
    assert rows == []


def test_where_leases_are_unsupported_the_settle_interval_alone_decides(
        stack: Stack, inbox: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def refuse(fd: int) -> None:  # as on NFS, SMB and FUSE mounts
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(writers, "_take_read_lease", refuse)
    caplog.set_level(logging.INFO, logger="watchers")
    content = unique_pdf_bytes()
    with RunningWatcher(stack, inbox) as running:
        (inbox / "on-a-share.pdf").write_bytes(content)
        ids = running.wait_for_claims(1)

    document = stack.wait(ids)[ids[0]]
    assert (document.status, document.file_size) == ("stored", len(content))
    notes = [r.getMessage() for r in caplog.records if "settle interval alone" in r.getMessage()]
    assert len(notes) == 1 and "on-a-share.pdf" in notes[0], notes


def test_an_empty_file_waits_for_its_content(stack: Stack, inbox: Path) -> None:
    with RunningWatcher(stack, inbox, watch_empty_settle_seconds=60.0) as running:
        target = inbox / "scanner-output.pdf"
        target.touch()
        time.sleep(SETTLE * 4)
        assert running.claimed == [] and target.exists()

        target.write_bytes(unique_pdf_bytes())
        ids = running.wait_for_claims(1)

    assert stack.wait(ids)[ids[0]].status == "stored"


def test_a_file_that_stays_empty_is_finally_rejected_and_quarantined(
        stack: Stack, inbox: Path) -> None:
    with RunningWatcher(stack, inbox, watch_empty_settle_seconds=2.0) as running:
        (inbox / "never-filled.pdf").touch()
        ids = running.wait_for_claims(1)

    document = stack.wait(ids)[ids[0]]
    assert (document.status, document.error_code) == ("failed", "empty_file")
    assert (document.file_size, document.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert list(stack.settings.quarantine.glob(f"{document.id}-never-filled.pdf.error.json"))


def test_a_damaged_docx_from_the_inbox_keeps_its_size_hash_and_type(
        stack: Stack, inbox: Path) -> None:
    content = (CORPUS / "office" / "testWORD_truncated.docx").read_bytes()
    with RunningWatcher(stack, inbox) as running:
        (inbox / "letter.docx").write_bytes(content)
        ids = running.wait_for_claims(1)

    document = stack.wait(ids)[ids[0]]
    assert (document.status, document.error_code) == ("failed", "corrupt")
    assert document.file_size == len(content)
    assert document.sha256 == hashlib.sha256(content).hexdigest()
    assert document.mime_type == "application/zip"


def test_hidden_temporary_and_nas_names_are_left_alone(stack: Stack, inbox: Path) -> None:
    ignored = [".hidden.pdf", "~$lock.pdf", "scan.pdf.part", "upload.tmp", "file.crdownload",
               "Thumbs.db", "@eaDir/scan.pdf", ".sync/scan.pdf"]
    for name in ignored:
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(unique_pdf_bytes())

    with RunningWatcher(stack, inbox) as running:
        (inbox / "real.pdf").write_bytes(unique_pdf_bytes())
        running.wait_for_claims(1)
        time.sleep(SETTLE * 3)

    assert len(running.claimed) == 1
    for name in ignored:
        assert (inbox / name).exists(), name


def test_files_present_before_start_and_nested_folders_are_taken(
        stack: Stack, inbox: Path) -> None:
    (inbox / "2024" / "03").mkdir(parents=True)
    (inbox / "top.pdf").write_bytes(unique_pdf_bytes())
    (inbox / "2024" / "03" / "deep.pdf").write_bytes(unique_pdf_bytes())

    with RunningWatcher(stack, inbox) as running:
        ids = running.wait_for_claims(2)

    found = stack.wait(ids)
    assert sorted(d.original_name for d in found.values()) == ["deep.pdf", "top.pdf"]
    assert all(d.status == "stored" for d in found.values())


def test_a_folder_moved_in_whole_is_ingested(stack: Stack, inbox: Path) -> None:
    outside = stack.root / f"outside-{uuid.uuid4().hex[:6]}"
    (outside / "batch" / "sub").mkdir(parents=True)
    for name in ("a.pdf", "sub/b.pdf", "sub/c.pdf"):
        (outside / "batch" / name).write_bytes(unique_pdf_bytes())
    # Old mtimes, as after a copy that preserves them.
    old = time.time() - 3600
    for path in (outside / "batch").rglob("*.pdf"):
        os.utime(path, (old, old))

    with RunningWatcher(stack, inbox) as running:
        time.sleep(SETTLE)
        os.rename(outside / "batch", inbox / "batch")
        ids = running.wait_for_claims(3)

    assert len(ids) == 3
    assert all(d.status == "stored" for d in stack.wait(ids).values())


def test_a_name_that_is_not_utf8_is_handled(stack: Stack, inbox: Path) -> None:
    raw_name = os.fsencode(inbox) + b"/Befund_M\xfcller.pdf"  # Latin-1, as old shares write
    with open(raw_name, "wb") as out:
        out.write(unique_pdf_bytes())

    with RunningWatcher(stack, inbox) as running:
        ids = running.wait_for_claims(1)

    document = stack.wait(ids)[ids[0]]
    assert document.status == "stored"
    assert document.original_name == "Befund_Müller.pdf"


def test_two_watchers_on_one_inbox_never_take_the_same_file(stack: Stack, inbox: Path) -> None:
    names = [f"scan-{index:03d}.pdf" for index in range(40)]
    old = time.time() - 3600
    for name in names:
        (inbox / name).write_bytes(unique_pdf_bytes())
        os.utime(inbox / name, (old, old))

    with RunningWatcher(stack, inbox) as first, RunningWatcher(stack, inbox) as second:
        deadline = time.monotonic() + 60
        while len(first.claimed) + len(second.claimed) < len(names) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(SETTLE * 2)

    claimed = first.claimed + second.claimed
    assert len(claimed) == len(set(claimed)) == len(names)
    found = stack.wait(claimed)
    assert sorted(d.original_name for d in found.values()) == names
    assert list(inbox.iterdir()) == []
    with stack.runtime.session() as session:
        leftovers = session.scalars(select(Document.id).where(
            Document.spool_ref.is_(None), Document.source_path.startswith(str(inbox)))).all()
    assert leftovers == []


def test_a_crash_between_claim_and_row_update_is_recovered(stack: Stack, inbox: Path) -> None:
    """Row written, file renamed into the spool, then the watcher died."""
    source = inbox / "claimed-then-crashed.pdf"
    source.write_bytes(unique_pdf_bytes())
    document_id = uuid.uuid4()
    with stack.runtime.session() as session:
        documents.add_received(session, Actor.here(), spool_ref=None, id=document_id,
                               source="watch", original_name=source.name,
                               source_path=str(source))
        session.commit()
    stack.runtime.spool.claim(source, document_id)
    with stack.runtime.session() as session:
        session.get(Document, document_id).uploaded_at = documents.stale_since(3600)
        session.commit()

    for pending in recover(stack.runtime, Actor.here()):
        enqueue_ingest(stack.app, pending)

    assert stack.wait([document_id])[document_id].status == "stored"


def test_a_crash_before_the_rename_leaves_the_file_for_the_next_scan(
        stack: Stack, inbox: Path) -> None:
    source = inbox / "never-renamed.pdf"
    source.write_bytes(unique_pdf_bytes())
    ghost = uuid.uuid4()
    with stack.runtime.session() as session:
        documents.add_received(session, Actor.here(), spool_ref=None, id=ghost,
                               source="watch", original_name=source.name,
                               source_path=str(source))
        session.get(Document, ghost).uploaded_at = documents.stale_since(3600)
        session.commit()

    recover(stack.runtime, Actor.here())
    assert stack.documents([ghost]) == {}

    with RunningWatcher(stack, inbox) as running:
        ids = running.wait_for_claims(1)
    assert stack.wait(ids)[ids[0]].status == "stored"


def test_polling_mode_finds_files_too(stack: Stack, inbox: Path) -> None:
    with RunningWatcher(stack, inbox, watch_polling="always",
                        watch_poll_interval_seconds=0.5) as running:
        (inbox / "polled.pdf").write_bytes(unique_pdf_bytes())
        ids = running.wait_for_claims(1)
    assert stack.wait(ids)[ids[0]].status == "stored"


def assert_taken_once_and_whole(stack: Stack, running: RunningWatcher, ids: list,
                                content: bytes, target: Path) -> Document:
    """One claim, and the document stored with every byte the writer wrote."""
    assert len(running.claimed) == 1
    document = stack.wait(ids)[ids[0]]
    assert document.status == "stored"
    assert document.file_size == len(content)
    assert document.sha256 == hashlib.sha256(content).hexdigest()
    assert not target.exists()
    return document
