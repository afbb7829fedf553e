"""A task delivered twice, at once or one after the other, leaves one row and one object."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from pipeline.documents import Actor
from pipeline.ingest import ingest_document
from pipeline.runtime import Runtime
from tests.conftest import CORPUS
from tests.support.stack import Stack

PDF = CORPUS / "pdf" / "pdflatex-4-pages.pdf"


def unique_pdf(tmp_path: Path, tag: str) -> Path:
    """A real PDF with a unique trailing comment, so it is never a duplicate."""
    path = tmp_path / f"{tag}.pdf"
    path.write_bytes(PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode())
    return path


def objects_of(stack: Stack, document_id: uuid.UUID) -> list[str]:
    return [key for key in stack.object_keys() if str(document_id) in key]


def test_same_task_run_twice_stores_once(stack: Stack, tmp_path: Path) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path, "twice"), enqueue=False)
    actor = Actor.here("task-twice")

    first = ingest_document(stack.runtime, document_id, actor)
    second = ingest_document(stack.runtime, document_id, actor)

    assert (first, second) == ("stored", "skipped")
    assert len(objects_of(stack, document_id)) == 2  # the original and its thumbnail
    assert stack.events(document_id).count("stored") == 1


def test_redelivery_after_a_worker_died_takes_the_document_over(
        stack: Stack, tmp_path: Path) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path, "redelivered"), enqueue=False)
    actor = Actor("host-that-died:1", "task-redelivered")
    with stack.runtime.session() as session:
        from pipeline import documents

        assert documents.claim(session, document_id, actor, lease_seconds=3600) is not None

    # The broker redelivers the same message (same task id) to a live worker.
    assert ingest_document(stack.runtime, document_id, Actor.here("task-redelivered")) == "stored"
    assert stack.document(document_id).status == "stored"


def test_a_second_task_for_a_leased_document_backs_off(stack: Stack, tmp_path: Path) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path, "leased"), enqueue=False)
    with stack.runtime.session() as session:
        from pipeline import documents

        documents.claim(session, document_id, Actor("busy:1", "task-a"), lease_seconds=3600)

    assert ingest_document(stack.runtime, document_id, Actor.here("task-b")) == "skipped"
    assert stack.document(document_id).status == "processing"


@pytest.mark.parametrize("same_task_id", [True, False], ids=["same-task", "two-tasks"])
def test_concurrent_deliveries_leave_one_row_and_one_object(
        stack: Stack, tmp_path: Path, same_task_id: bool) -> None:
    document_id = stack.ingest(unique_pdf(tmp_path, "concurrent"), enqueue=False)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def deliver(task_id: str) -> None:
        runtime = Runtime(stack.settings)  # one per worker process in real life
        try:
            start.wait()
            outcomes.append(ingest_document(runtime, document_id, Actor.here(task_id)))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            runtime.close()

    task_ids = ["t-same", "t-same"] if same_task_id else ["t-one", "t-two"]
    threads = [threading.Thread(target=deliver, args=(task_id,)) for task_id in task_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert "stored" in outcomes
    assert stack.document(document_id).status == "stored"
    assert sorted(objects_of(stack, document_id)) == sorted(
        [stack.document(document_id).s3_key, stack.document(document_id).thumbnail_key])
    assert not stack.runtime.spool.exists(str(document_id))


def test_identical_content_is_stored_once_and_the_rest_are_duplicates(
        stack: Stack, tmp_path: Path) -> None:
    content = unique_pdf(tmp_path, "original")
    copies = []
    for index in range(3):
        copy = tmp_path / f"copy-{index}.pdf"
        copy.write_bytes(content.read_bytes())
        copies.append(copy)

    ids = [stack.ingest(path) for path in copies]
    found = stack.wait(ids)

    statuses = sorted(document.status for document in found.values())
    assert statuses == ["duplicate", "duplicate", "stored"]
    original = next(d for d in found.values() if d.status == "stored")
    for document in found.values():
        if document.status == "duplicate":
            assert document.duplicate_of == original.id
            assert document.s3_key is None
            assert objects_of(stack, document.id) == []


def test_a_duplicate_race_leaves_no_orphan_object(stack: Stack, tmp_path: Path) -> None:
    content = unique_pdf(tmp_path, "race").read_bytes()
    paths = []
    for index in range(2):
        path = tmp_path / f"race-{index}.pdf"
        path.write_bytes(content)
        paths.append(path)
    ids = [stack.ingest(path, enqueue=False) for path in paths]
    start = threading.Barrier(2)

    errors: list[BaseException] = []

    def deliver(document_id: uuid.UUID) -> None:
        runtime = Runtime(stack.settings)
        try:
            start.wait()
            ingest_document(runtime, document_id, Actor.here(f"race-{document_id}"))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            runtime.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    found = stack.documents(ids)
    assert sorted(d.status for d in found.values()) == ["duplicate", "stored"]
    loser = next(d for d in found.values() if d.status == "duplicate")
    assert objects_of(stack, loser.id) == []


def test_a_database_out_of_reach_at_the_claim_is_transient(tmp_path: Path) -> None:
    # The task's connection is taken before the claim; failing to get it must
    # still be retried (TransientError), never fail the message for good.
    from pipeline.errors import TransientError
    from pipeline.settings import Settings

    settings = Settings(_env_file=None, var_dir=tmp_path / "var", inbox=tmp_path / "inbox",
                        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(TransientError):
        ingest_document(Runtime(settings), uuid.uuid4(), Actor.here("task-no-db"))
