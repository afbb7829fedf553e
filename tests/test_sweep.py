"""Documents a broker lost or a crash stranded are handed out again, and finish once."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from pipeline import documents
from pipeline.db.models import Document, utcnow
from pipeline.documents import Actor
from pipeline.sweep import sweep
from tests.conftest import CORPUS
from tests.support.stack import Stack
from workers.celery_app import enqueue_ingest

PDF = CORPUS / "pdf" / "multicolumn.pdf"


def unique_pdf(tmp_path: Path) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.pdf"
    path.write_bytes(PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode())
    return path


def age(stack: Stack, document_id: uuid.UUID, seconds: int, **values: object) -> None:
    with stack.runtime.session() as session:
        document = session.get(Document, document_id)
        document.updated_at = utcnow() - timedelta(seconds=seconds)
        for name, value in values.items():
            setattr(document, name, value)
        session.commit()


def sweep_and_enqueue(stack: Stack) -> list[uuid.UUID]:
    result = sweep(stack.runtime, Actor.here(), stuck_after_seconds=600)
    for document_id in result.requeue:
        enqueue_ingest(stack.app, document_id)
    return result.requeue


def test_a_document_whose_message_was_lost_is_requeued_and_stored(
        stack: Stack, tmp_path: Path) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path), enqueue=False)  # the message never made it
    age(stack, document_id, 3600)

    assert document_id in sweep_and_enqueue(stack)
    assert stack.wait([document_id])[document_id].status == "stored"
    assert "requeued" in stack.events(document_id)


def test_a_document_held_by_a_dead_worker_is_taken_over_after_its_lease(
        stack: Stack, tmp_path: Path) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    with stack.runtime.session() as session:
        documents.claim(session, document_id, Actor("dead-host:1", "lost-task"), lease_seconds=1)
    age(stack, document_id, 3600, lease_until=utcnow() - timedelta(seconds=5))

    assert document_id in sweep_and_enqueue(stack)
    document = stack.wait([document_id])[document_id]
    assert document.status == "stored"
    assert stack.events(document_id).count("stored") == 1


def test_a_fresh_document_is_left_to_its_worker(stack: Stack, tmp_path: Path) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path), enqueue=False)

    assert document_id not in sweep(stack.runtime, Actor.here(), stuck_after_seconds=600).requeue


def dead_pid() -> int:
    """The pid of a process of this host that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lease_held_by_a_dead_process_of_this_host_is_broken_at_once(
        stack: Stack, tmp_path: Path) -> None:
    # Given a worker of this host that died (OOM killer) holding a fresh lease
    document_id = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    dead = Actor(f"{socket.gethostname()}:{dead_pid()}", "killed-task")
    with stack.runtime.session() as session:
        documents.claim(session, document_id, dead, lease_seconds=3600)
        session.commit()

    # Then the next sweep does not wait an hour for the lease: it requeues it
    assert document_id in sweep_and_enqueue(stack)
    assert stack.wait([document_id])[document_id].status == "stored"
    assert "lease_broken" in stack.events(document_id)


def test_a_lease_held_by_a_live_process_or_another_host_is_respected(
        stack: Stack, tmp_path: Path) -> None:
    alive = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    elsewhere = stack.ingest(unique_pdf(tmp_path), enqueue=False)
    with stack.runtime.session() as session:
        documents.claim(session, alive, Actor.here("busy-task"), lease_seconds=3600)
        documents.claim(session, elsewhere, Actor("other-host:1", "far-task"), lease_seconds=3600)
        session.commit()

    requeued = sweep(stack.runtime, Actor.here(), stuck_after_seconds=600).requeue

    assert alive not in requeued
    assert elsewhere not in requeued
