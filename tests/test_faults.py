"""Nothing lost, nothing twice, whatever fails around Sluice: faults made to happen for real.

Each test records a row of the fault table (fault, runs, documents in, stored once,
duplicates, lost), printed at the end of the test session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.db.models import DocumentEvent
from pipeline.documents import Actor
from pipeline.sweep import sweep
from tests.conftest import CORPUS, embedded_settings, make_bucket
from tests.support.private import FlakyProxy, PrivatePostgres, PrivateRedis, wait_until
from tests.support.services import MotoServer, unique_queue
from tests.support.stack import Stack
from workers.celery_app import INGEST_TASK, enqueue_ingest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PDF = CORPUS / "pdf" / "pdflatex-4-pages.pdf"


def unique_pdfs(folder: Path, count: int, source: Path = PDF) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    content = source.read_bytes()
    paths = []
    for index in range(count):
        path = folder / f"doc-{index:04d}.pdf"
        path.write_bytes(content + f"\n% {uuid.uuid4()}\n".encode())
        paths.append(path)
    return paths


def account(stack: Stack, ids: list[uuid.UUID]) -> dict[str, int]:
    """Stored once / duplicates / lost, from the rows, their events and the bucket."""
    documents = stack.documents(ids)
    with stack.runtime.session() as session:
        stored_events = Counter(session.scalars(
            select(DocumentEvent.document_id).where(DocumentEvent.event == "stored",
                                                    DocumentEvent.document_id.in_(ids))))
    keys = Counter(key.rsplit("/", 1)[-1].split(".")[0] for key in stack.object_keys())
    stored_once = sum(1 for i in ids if documents[i].status == "stored"
                      and stored_events[i] == 1 and keys[str(i)] == 2)
    duplicates = sum(1 for i in ids if stored_events[i] > 1 or keys[str(i)] > 2)
    lost = sum(1 for i in ids if i not in documents or documents[i].status != "stored")
    return {"in": len(ids), "stored_once": stored_once, "duplicates": duplicates, "lost": lost}


def assert_all_stored_once(stack: Stack, ids: list[uuid.UUID], report: list, fault: str,
                           runs: int = 1) -> None:
    counts = account(stack, ids)
    report.append({"fault": fault, "runs": runs, **counts})
    assert counts == {"in": len(ids), "stored_once": len(ids), "duplicates": 0, "lost": 0}


@pytest.fixture(scope="module")
def private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("private")
    redis = PrivateRedis(root)
    redis.start()
    postgres = PrivatePostgres()
    postgres.create()
    moto = MotoServer()
    moto.start()
    proxy = FlakyProxy(moto.port)
    proxy.start()
    make_bucket(moto.url)
    yield {"redis": redis, "postgres": postgres, "moto": moto, "proxy": proxy}
    proxy.stop()
    moto.stop()
    postgres.destroy()
    redis.stop()


def private_stack(services: dict, root: Path, **overrides: object) -> Stack:
    settings = embedded_settings(
        root, database_url=services["postgres"].url, broker_url=services["redis"].url,
        queue_name=unique_queue(), storage_url="s3://sluice-test",
        s3_endpoint_url=services["proxy"].url, **overrides)
    return Stack("private", settings, root)


@pytest.fixture
def stacks_to_close() -> Iterator[list[Stack]]:
    opened: list[Stack] = []
    yield opened
    for stack in opened:
        stack.close()


@pytest.mark.parametrize("point", ["ingest.after_claim", "ingest.after_upload",
                                   "ingest.after_commit"])
@pytest.mark.parametrize("backend", ["embedded", "services"])
def test_a_worker_killed_mid_step_loses_and_repeats_nothing(
        point: str, backend: str, private_services: dict, tmp_path: Path,
        stacks_to_close: list, fault_report: list) -> None:
    if backend == "embedded":
        stack = Stack("embedded", embedded_settings(tmp_path, failpoints=(point,),
                                                    stuck_after_seconds=5), tmp_path)
    else:
        stack = private_stack(private_services, tmp_path, failpoints=(point,))
    stacks_to_close.append(stack)
    stack.start_worker()

    ids = [stack.ingest(path) for path in unique_pdfs(tmp_path / "in", 12)]
    # The embedded broker cannot redeliver what a killed worker held: the sweeper does.
    if backend == "embedded":
        wait_until(lambda: (tmp_path / "var" / "failpoints" / point).exists(), 60)
        time.sleep(6)
        for document_id in sweep(stack.runtime, Actor.here()).requeue:
            enqueue_ingest(stack.app, document_id)
    stack.wait(ids, timeout=180)
    sweep(stack.runtime, Actor.here())  # tidies a copy left by a kill after the commit

    assert (stack.settings.var_dir / "failpoints" / point).exists(), "the fault happened"
    assert_all_stored_once(stack, ids, fault_report, f"SIGKILL at {point} ({backend})")
    assert not any(stack.runtime.spool.exists(str(i)) for i in ids)


def test_redis_restarted_without_persistence_while_200_files_wait(
        private_services: dict, tmp_path: Path, stacks_to_close: list,
        fault_report: list) -> None:
    stack = private_stack(private_services, tmp_path)
    stacks_to_close.append(stack)
    ids = [stack.ingest(path) for path in unique_pdfs(tmp_path / "in", 200,
                                                        CORPUS / "pdf" / "habibi.pdf")]

    private_services["redis"].restart()  # every queued message is gone
    stack.start_worker()
    time.sleep(2)
    requeued = sweep(stack.runtime, Actor.here(), stuck_after_seconds=1).requeue
    for document_id in requeued:
        enqueue_ingest(stack.app, document_id)
    stack.wait(ids, timeout=300)

    assert set(ids) <= set(requeued)
    assert_all_stored_once(stack, ids, fault_report, "Redis restarted, no persistence, 200 queued")


def test_the_bucket_down_for_30_seconds_then_slow_down_answers(
        private_services: dict, tmp_path: Path, stacks_to_close: list,
        fault_report: list) -> None:
    proxy: FlakyProxy = private_services["proxy"]
    stack = private_stack(private_services, tmp_path)
    stacks_to_close.append(stack)
    stack.start_worker()

    try:
        proxy.go_down()
        ids = [stack.ingest(path) for path in unique_pdfs(tmp_path / "in", 30)]
        time.sleep(30)
        proxy.slow_down()
        time.sleep(10)
    finally:
        proxy.come_back()
    found = stack.wait(ids, timeout=400)

    assert not [d for d in found.values() if d.status == "failed"]
    assert any("retry" in stack.events(i) for i in ids), "the outage was felt and retried"
    assert_all_stored_once(stack, ids, fault_report, "S3 down 30 s, then 503 SlowDown 10 s")


def test_postgres_restarted_mid_burst(private_services: dict, tmp_path: Path,
                                      stacks_to_close: list, fault_report: list) -> None:
    stack = private_stack(private_services, tmp_path, stuck_after_seconds=20)
    stacks_to_close.append(stack)
    ids = [stack.ingest(path) for path in unique_pdfs(tmp_path / "in", 60)]

    stack.start_worker()
    wait_until(lambda: any(d.status == "stored" for d in stack.documents(ids).values()), 60)
    private_services["postgres"].restart()
    time.sleep(25)
    for document_id in sweep(stack.runtime, Actor.here()).requeue:
        enqueue_ingest(stack.app, document_id)
    stack.wait(ids, timeout=400)

    assert_all_stored_once(stack, ids, fault_report, "PostgreSQL restarted mid-burst")


def test_the_same_task_delivered_at_once_to_two_workers(
        private_services: dict, tmp_path: Path, stacks_to_close: list,
        fault_report: list) -> None:
    stack = private_stack(private_services, tmp_path)
    stacks_to_close.append(stack)
    second = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "-c", "1", "-n", "second@%h"],
        env=stack.env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    stack.start_worker(concurrency=1)

    try:
        ids = [stack.ingest(path, enqueue=False) for path in unique_pdfs(tmp_path / "in", 20)]
        for document_id in ids:
            task_id = str(uuid.uuid4())
            for _ in range(2):  # the same message twice, as a broker may deliver it
                stack.app.send_task(INGEST_TASK, args=[str(document_id)], task_id=task_id)
        stack.wait(ids, timeout=180)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)

    assert_all_stored_once(stack, ids, fault_report, "same task to two workers at once", runs=2)


def test_a_full_spool_refuses_intake_and_leaves_the_source(tmp_path: Path) -> None:
    spool = tmp_path / "small-spool"
    spool.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(spool)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode()}")
    try:
        settings = embedded_settings(tmp_path, spool=spool)
        stack = Stack("embedded", settings, tmp_path)
        big = tmp_path / "big-scan.pdf"
        big.write_bytes(PDF.read_bytes() + os.urandom(600_000))

        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "ingest", str(big)],
            env=stack.env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        stack.close()
    finally:
        subprocess.run(["umount", str(spool)], check=False)

    assert result.returncode == 1
    assert "no space left in the spool" in result.stderr
    assert big.exists()
    assert list(spool.iterdir()) == []
