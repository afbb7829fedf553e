"""The worker on the embedded default keeps going when one of its pool processes is killed.

A pool process can die while idle, waiting for work (the OOM killer, an operator's
``kill -9``). Each test below starts its own worker with two pool processes on the
embedded default (SQLite database, SQLite broker) and kills them for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CORPUS, embedded_settings
from tests.support.private import wait_until
from tests.support.stack import Stack, processes

pytestmark = pytest.mark.slow

PDF = CORPUS / "pdf" / "pdflatex-4-pages.pdf"
# Up from the 30 s ``sluice up`` allows a worker: an idle worker has nothing to finish.
STOP_BOUND_SECONDS = 15.0


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack("embedded", embedded_settings(tmp_path), tmp_path)
    stack.start_worker(concurrency=2)
    yield stack
    stack.close()


def pool_processes(stack: Stack) -> set[int]:
    """The worker's direct children: its pool processes, when no file is being read."""
    return {pid for pid, fields in processes()
            if int(fields[1]) == stack.worker.pid and fields[0] != "Z"}


def is_sleeping(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "S"
    except OSError:
        return False


def wait_for_idle_pool(stack: Stack, size: int = 2) -> set[int]:
    """The pool processes, once there are ``size`` of them and all wait for work."""
    def idle() -> bool:
        pids = pool_processes(stack)
        return len(pids) == size and all(is_sleeping(pid) for pid in pids)

    assert wait_until(idle, 30), f"pool not idle: {pool_processes(stack)}"
    time.sleep(1.0)  # let each one reach its blocking read
    return pool_processes(stack)


def kill_each_idle_pool_process(stack: Stack) -> None:
    """SIGKILL the idle pool processes one at a time, waiting for each replacement.

    One of them holds whatever a shared queue would be guarded by, so killing
    each in turn is sure to kill that one.
    """
    for pid in sorted(wait_for_idle_pool(stack)):
        os.kill(pid, signal.SIGKILL)
        wait_for_idle_pool(stack)
        assert pid not in pool_processes(stack)


def unique_pdfs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"after-kill-{index}.pdf"
        path.write_bytes(PDF.read_bytes() + f"\n% {uuid.uuid4()}\n".encode())
        paths.append(path)
    return paths


def test_the_embedded_worker_runs_the_asynchronous_pool(embedded: Stack) -> None:
    wait_until(lambda: "worker pool ready" in embedded.worker_log.read_text(), 10)

    assert "worker pool ready pool=AsynPool processes=2" in embedded.worker_log.read_text()


def test_documents_are_stored_after_idle_pool_processes_were_killed(
        embedded: Stack, tmp_path: Path) -> None:
    kill_each_idle_pool_process(embedded)

    ids = [embedded.ingest(path) for path in unique_pdfs(tmp_path / "in", 6)]
    documents = embedded.wait(ids, timeout=60)

    assert {d.status for d in documents.values()} == {"stored"}


def test_sigterm_stops_the_worker_after_idle_pool_processes_were_killed(
        embedded: Stack) -> None:
    kill_each_idle_pool_process(embedded)
    pool = pool_processes(embedded)

    started = time.monotonic()
    embedded.worker.send_signal(signal.SIGTERM)
    try:
        embedded.worker.wait(timeout=STOP_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running {STOP_BOUND_SECONDS}s after SIGTERM:\n"
                    f"{embedded.worker_log.read_text()[-3000:]}")

    embedded.worker = None

    assert time.monotonic() - started < STOP_BOUND_SECONDS
    assert wait_until(lambda: not any(is_sleeping(pid) for pid in pool), 5), "pool left behind"
