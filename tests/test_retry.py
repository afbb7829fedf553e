"""An operator sends quarantined documents through again: same ids, stored this time.

The failures are real: the worker runs with a 1 KB file limit, so PDFs end
``failed`` (``too_large``) in quarantine; the operator then raises the limit
(restarts the worker without it) and runs ``sluice retry``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.quarantine import quarantine_name
from tests.reconcile_helpers import unique_pdf
from tests.support.api_server import serve
from tests.support.stack import Stack

LIMIT = {"SLUICE_MAX_FILE_SIZE": "1024"}


def sluice(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=stack.env,
                          cwd=stack.root, capture_output=True, text=True, timeout=180)


def restart_worker(stack: Stack, env: dict[str, str]) -> None:
    if all(stack.extra_env.get(name) == env.get(name) for name in LIMIT):
        return
    stack.stop_worker()
    for name in LIMIT:
        stack.extra_env.pop(name, None)
    stack.extra_env.update(env)
    stack.start_worker()


@pytest.fixture
def refusing_worker(stack: Stack) -> Iterator[Stack]:
    restart_worker(stack, LIMIT)
    yield stack
    restart_worker(stack, {})


def quarantined(stack: Stack, document_id: uuid.UUID) -> list[Path]:
    return sorted(stack.settings.quarantine.glob(f"{document_id}-*"))


def test_refused_documents_are_stored_under_their_own_ids_once_retried(
        refusing_worker: Stack, tmp_path: Path) -> None:
    stack = refusing_worker
    small = tmp_path / "note.txt"
    small.write_text(f"short enough {uuid.uuid4()}\n")
    stored = stack.ingest(small)
    refused = [stack.ingest(unique_pdf(tmp_path)) for _ in range(5)]
    final = stack.wait([stored, *refused])
    assert final[stored].status == "stored"
    assert {final[i].error_code for i in refused} == {"too_large"}
    assert all(len(quarantined(stack, i)) == 2 for i in refused), "file and .error.json"
    alone, first, second, emptied, by_api = refused
    content = quarantined(stack, alone)[0].read_bytes()
    for path in quarantined(stack, emptied):
        path.unlink()  # an operator cleaned up by hand
    restart_worker(stack, {})

    one = sluice(stack, "retry", str(alone), "--wait", "--json")
    api = serve(stack)
    try:
        asked = api.client.post(f"/api/documents/{by_api}/retry/")
        through_api = api.wait_final(str(by_api))
        by_code = sluice(stack, "retry", "--code", "too_large")
        stack.wait([first, second])
        others = sluice(stack, "retry", str(stored), str(uuid.uuid4()))
        not_failed = api.client.post(f"/api/documents/{stored}/retry/")
        no_file = api.client.post(f"/api/documents/{emptied}/retry/")
        unknown = api.client.post(f"/api/documents/{uuid.uuid4()}/retry/")
    finally:
        api.stop()

    assert asked.status_code == 202, asked.text
    assert asked.json()["id"] == str(by_api)
    assert asked.json()["status"] in ("received", "processing", "stored")  # a worker is quick
    assert (through_api["status"], through_api["error"]) == ("stored", None)
    assert (not_failed.status_code, not_failed.json()["error"]["code"]) == (409, "not_failed")
    assert (no_file.status_code, no_file.json()["error"]["code"]) == (409, "nothing_to_retry")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")

    assert one.returncode == 0, one.stderr
    answer = json.loads(one.stdout.strip())
    assert (answer["id"], answer["status"], answer["error"]) == (str(alone), "stored", None)
    document = stack.document(alone)
    assert document.file_size == len(content) and document.thumbnail_key
    assert quarantined(stack, alone) == [], "quarantine emptied"
    events = stack.events(alone)
    assert events.index("failed") < events.index("retried") < events.index("stored")
    assert stack.object_keys(f"{stack.settings.storage.prefix}documents/{alone}") \
        == [document.s3_key]

    assert by_code.returncode == 3, "one of them had no file left to retry"
    lines = {line.split()[0]: line.split()[1] for line in by_code.stdout.splitlines()}
    ours = {str(first), str(second), str(emptied)}  # other tests' documents may be failed too
    assert {i: lines[i] for i in ours} == {str(first): "queued", str(second): "queued",
                                           str(emptied): "no_file"}
    final = stack.documents([first, second, emptied])
    assert [final[i].status for i in (first, second, emptied)] == ["stored", "stored", "failed"]
    assert final[emptied].error_code == "too_large"

    assert others.returncode == 3
    assert [line.split()[1] for line in others.stdout.splitlines()] == ["not_failed", "unknown"]
    assert stack.document(stored).status == "stored"


def corrupt_pdf(folder: Path) -> Path:
    """A damaged PDF, unique so that it is never a duplicate: it always fails ``corrupt``."""
    from tests.conftest import CORPUS

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"damaged-{uuid.uuid4().hex[:8]}.pdf"
    path.write_bytes((CORPUS / "hostile" / "truncated.pdf").read_bytes()[:3000]
                     + f"\n% {uuid.uuid4()}\n".encode())
    return path


def test_retries_of_one_document_at_once_take_it_once_and_lose_nothing(
        stack: Stack, tmp_path: Path) -> None:
    import concurrent.futures

    document_id = stack.ingest(corrupt_pdf(tmp_path))
    assert stack.wait([document_id])[document_id].error_code == "corrupt"
    content = quarantined(stack, document_id)[0].read_bytes()
    api = serve(stack)
    answers = []
    try:
        for _ in range(3):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                round_ = list(pool.map(
                    lambda _: api.client.post(f"/api/documents/{document_id}/retry/"),
                    range(8)))
            answers.append(sorted(answer.status_code for answer in round_))
            stack.wait([document_id])
    finally:
        api.stop()

    # Each round takes it at least once and answers nothing but 202 or 409; a request
    # that comes after the document has already failed again retries it again.
    assert all(round_.count(202) >= 1 and set(round_) <= {202, 409} for round_ in answers)
    document = stack.document(document_id)
    assert (document.status, document.error_code) == ("failed", "corrupt")
    kept = quarantined(stack, document_id)
    assert [p.name.endswith(".error.json") for p in kept] == [False, True]
    assert kept[0].read_bytes() == content, "the file is back in quarantine, whole"
    assert not stack.runtime.spool.exists(str(document_id))
    assert stack.events(document_id).count("retried") == sum(r.count(202) for r in answers)


def test_retry_takes_no_link_and_says_when_the_file_was_changed(
        stack: Stack, tmp_path: Path) -> None:
    linked, changed = (stack.ingest(corrupt_pdf(tmp_path)) for _ in range(2))
    stack.wait([linked, changed])
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the bucket\n")
    link = quarantined(stack, linked)[0]
    link.unlink()
    link.symlink_to(secret)
    repaired = quarantined(stack, changed)[0]
    repaired.write_bytes(unique_pdf(tmp_path).read_bytes())  # an operator's repair

    refused = sluice(stack, "retry", str(linked))
    taken = sluice(stack, "retry", str(changed))
    final = stack.wait([changed])[changed]

    assert refused.returncode == 3 and "no_file" in refused.stdout
    assert stack.document(linked).status == "failed" and link.is_symlink()
    assert taken.returncode == 0 and "changed" in taken.stdout
    assert final.status == "stored"
    with stack.runtime.session() as session:
        from sqlalchemy import select

        from pipeline.db.models import DocumentEvent

        detail = session.scalars(select(DocumentEvent.detail).where(
            DocumentEvent.document_id == changed, DocumentEvent.event == "retried")).one()
    assert detail["content_changed"] is True


def interrupted_retry(stack: Stack, document_id: uuid.UUID) -> bytes:
    """What a retry killed after moving the file into the spool leaves: the file in the
    spool, the row still failed and leased to a process of this host that is gone."""
    import socket
    from datetime import timedelta

    from sqlalchemy import update

    from pipeline.db.models import Document, utcnow

    dead = subprocess.Popen(["true"])
    dead.wait()
    (kept, _sidecar) = quarantined(stack, document_id)
    content = kept.read_bytes()
    stack.runtime.spool.claim(kept, document_id)
    with stack.runtime.session() as session:
        session.execute(update(Document).where(Document.id == document_id).values(
            lease_owner=f"retry-dead0000:-@{socket.gethostname()}:{dead.pid}",
            lease_until=utcnow() + timedelta(hours=1)))
        session.commit()
    return content


def test_an_interrupted_retry_is_finished_at_once_and_a_file_put_there_since_wins(
        stack: Stack, tmp_path: Path) -> None:
    again, replaced = (stack.ingest(corrupt_pdf(tmp_path)) for _ in range(2))
    stack.wait([again, replaced])
    content = interrupted_retry(stack, again)
    old = interrupted_retry(stack, replaced)
    repaired = unique_pdf(tmp_path).read_bytes()
    usual = stack.settings.quarantine / quarantine_name(stack.document(replaced))
    usual.write_bytes(repaired)  # an operator found the file gone and put a good one

    resumed = sluice(stack, "retry", str(again), str(replaced), "--wait")

    assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # one fails again
    final = stack.documents([again, replaced])
    assert (final[again].status, final[again].error_code) == ("failed", "corrupt")
    assert quarantined(stack, again)[0].read_bytes() == content
    assert final[replaced].status == "stored"
    assert final[replaced].file_size == len(repaired)
    aside = stack.settings.quarantine / f"{replaced}-interrupted-retry"
    assert aside.read_bytes() == old, "the copy the interrupted retry held is kept"
    for document_id in (again, replaced):
        assert not stack.runtime.spool.exists(str(document_id))
