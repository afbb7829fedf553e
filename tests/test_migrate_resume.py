"""A migration stopped or killed half-way, run again, ends as if it never stopped."""

from __future__ import annotations

import hashlib
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.db.models import MigrationRun
from pipeline.migration.ledger import run_id_for
from pipeline.migration.migrate import MigrationRequest, StopRequested, run_migration
from pipeline.migration.options import MigrationOptions
from tests.support.migration import (
    Migration,
    ledger_rows,
    make_zip,
    migrate,
    no_worker_env,
    run_documents,
    start_migrate,
    unique_bytes,
    wait_for,
)
from tests.support.stack import Stack

FILES_IN_TREE = 60 + 2 + 10


def make_tree(root: Path, label: str) -> Path:
    """72 files: folders of documents, a duplicate pair, a zip of 10, one bad name."""
    for number in range(60):
        folder = root / f"box-{number % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        document = folder / f"doc-{number:03d}.txt"
        document.write_bytes(unique_bytes(f"{label} {number}"))
    twin = unique_bytes(f"{label} twin")
    (root / "box-0" / "letter.txt").write_bytes(twin)
    (root / "box-3" / "copy of letter.txt").write_bytes(twin)
    make_zip(root / "box-2" / "old.zip",
             [(f"inner/scan-{n}.txt", unique_bytes(f"{label} inner {n}"))
              for n in range(10)] + [("../escape.txt", b"no")])
    return root


def contents(root: Path) -> dict[str, str]:
    """Expected source_path -> sha256 of every file the tree should bring in."""
    import zipfile

    expected = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.filename.startswith(".."):
                        expected[f"{relative}/{info.filename}"] = hashlib.sha256(
                            archive.read(info)).hexdigest()
        elif path.is_file():
            expected[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return expected


def assert_taken_once(stack: Stack, run_id: object, root: Path) -> None:
    documents = run_documents(stack, run_id)
    paths = [document.source_path for document in documents]
    assert len(paths) == len(set(paths)), "an entry was taken twice"
    assert {d.source_path: d.sha256 for d in documents} == contents(root)
    statuses = sorted(document.status for document in documents)
    assert statuses == ["duplicate"] + ["stored"] * (FILES_IN_TREE - 1)
    assert not any(stack.settings.spool.joinpath(str(d.id)).exists() for d in documents)


def shape(migration: Migration) -> list[tuple[str, str, str | None]]:
    return sorted((e["path"], e["outcome"], e["error_code"])
                  for e in migration.report["entries"])


def test_stopped_migration_resumed_takes_each_entry_once(stack: Stack,
                                                         tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", "stopped")
    request = MigrationRequest(source=tree, options=MigrationOptions(), max_in_flight=5,
                               stop_after=25)

    with pytest.raises(StopRequested):
        run_migration(stack.runtime, stack.app, request)
    run_id = run_id_for(tree.resolve(), MigrationOptions().fingerprint())
    assert len(run_documents(stack, run_id)) == 25

    summary = run_migration(stack.runtime, stack.app, replace(request, stop_after=None))

    assert summary.taken_this_pass == FILES_IN_TREE - 25
    assert summary.outcomes == {"stored": FILES_IN_TREE - 1, "duplicate": 1,
                                "refused": 1, "unpacked": 1}
    assert_taken_once(stack, run_id, tree)
    assert len(ledger_rows(stack, run_id)) == summary.entries


def test_killed_migration_resumed_equals_an_uninterrupted_one(stack: Stack,
                                                              tmp_path: Path) -> None:
    calm = make_tree(tmp_path / "calm", "calm")
    crashed = make_tree(tmp_path / "crashed", "crashed")
    uninterrupted = migrate(stack, calm)
    assert uninterrupted.returncode == 3, uninterrupted.stderr  # the bad name

    process = start_migrate(stack, crashed, "--max-in-flight", "3")
    run_id = run_id_for(crashed.resolve(), MigrationOptions().fingerprint())
    wait_for(lambda: len(run_documents(stack, run_id)) >= 20, timeout=120)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert len(run_documents(stack, run_id)) < FILES_IN_TREE

    resumed = migrate(stack, crashed)

    assert resumed.returncode == uninterrupted.returncode
    assert shape(resumed) == shape(uninterrupted)
    assert resumed.summary["taken_this_pass"] < FILES_IN_TREE
    assert_taken_once(stack, uninterrupted.run_id, calm)
    assert_taken_once(stack, resumed.run_id, crashed)


def test_finished_migration_run_again_takes_nothing(stack: Stack,
                                                    tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", "again")
    first = migrate(stack, tree)

    again = migrate(stack, tree)

    assert again.summary["taken_this_pass"] == 0
    assert shape(again) == shape(first)
    assert again.report["passes"] == 2
    assert_taken_once(stack, first.run_id, tree)


def small_tree(root: Path, label: str, count: int = 3) -> Path:
    root.mkdir()
    for number in range(count):
        (root / f"doc-{number}.txt").write_bytes(unique_bytes(f"{label} {number}"))
    return root


def test_second_process_on_the_same_run_is_refused(stack: Stack,
                                                   tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", "busy")
    # No worker reads its queue: after one document it waits for room until stopped,
    # so it is still running whatever the load on the machine.
    process = start_migrate(stack, tree, "--max-in-flight", "1", env=no_worker_env())
    run_id = run_id_for(tree.resolve(), MigrationOptions().fingerprint())
    try:
        wait_for(lambda: len(run_documents(stack, run_id)) >= 1, timeout=120)
        second = migrate(stack, tree)
        assert second.returncode == 1
        assert "already running" in second.stderr
        assert process.poll() is None, "the first migration left its hold"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "run the same command again" in stderr
    # The stack's own worker finishes what the first one spooled.
    assert migrate(stack, tree).returncode == 0


def process_state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()[0]


def test_a_killed_migration_not_yet_reaped_does_not_hold_its_run(
        stack: Stack, tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", "zombie")
    process = start_migrate(stack, tree, "--max-in-flight", "1", env=no_worker_env())
    run_id = run_id_for(tree.resolve(), MigrationOptions().fingerprint())
    try:
        wait_for(lambda: len(run_documents(stack, run_id)) >= 1, timeout=120)
        process.send_signal(signal.SIGKILL)
        # Not reaped yet: the pid still answers signals, as a zombie.
        wait_for(lambda: process_state(process.pid) == "Z", timeout=30)

        again = migrate(stack, tree)

        assert "already running" not in again.stderr
        assert again.returncode == 0, again.stderr
        assert again.report["passes"] == 2
        assert sorted(e["outcome"] for e in again.report["entries"]) == ["stored"] * 3
    finally:
        process.kill()
        process.communicate()


def test_an_owner_pid_now_used_by_another_process_does_not_hold_the_run(
        stack: Stack, tmp_path: Path) -> None:
    import os
    import socket
    import subprocess

    from pipeline.migration.ledger import RunBusy, RunLedger, owner_name

    tree = small_tree(tmp_path / "tree", "reused pid", count=1)
    options = MigrationOptions().fingerprint()
    run_id = run_id_for(tree.resolve(), options)
    RunLedger.open(stack.runtime, run_id, tree.resolve(), options)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        def owned_by(owner: str) -> None:
            with stack.runtime.session() as session:
                run = session.get(MigrationRun, run_id)
                run.status, run.owner = "running", owner
                session.commit()

        # The pid lives, but it started at another time than the owner recorded.
        owned_by(f"{socket.gethostname()}:{stranger.pid}/1")
        RunLedger.open(stack.runtime, run_id, tree.resolve(), options)
        # The same pid with its own start time is a live owner.
        owned_by(owner_name(stranger.pid))
        with pytest.raises(RunBusy, match=f"process {stranger.pid}"):
            RunLedger.open(stack.runtime, run_id, tree.resolve(), options)
        assert os.getpid() != stranger.pid
    finally:
        stranger.kill()
        stranger.wait()


def test_timeout_with_documents_pending_is_not_success(stack: Stack,
                                                       tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", "pending")

    gave_up = migrate(stack, tree, "--timeout", "1", env=no_worker_env())

    assert gave_up.returncode == 1, gave_up.stderr
    assert "3 entries are still pending" in gave_up.stderr
    assert "run the same command again" in gave_up.stderr
    assert gave_up.summary["pending"] == 3 and gave_up.summary["exit_code"] == 1
    assert gave_up.summary["status"] == "timed_out"
    reported = gave_up.report
    assert "run the same command again" in reported["summary"]["note"]
    assert {e["outcome"] for e in reported["entries"]} == {"pending"}

    picked_up = migrate(stack, tree, "--timeout", "120")

    assert picked_up.returncode == 0, picked_up.stderr
    assert picked_up.summary["taken_this_pass"] == 0
    assert picked_up.summary["pending"] == 0 and picked_up.summary["note"] is None
    assert {e["outcome"] for e in picked_up.report["entries"]} == {"stored"}


def test_document_spooled_just_before_a_crash_is_adopted(stack: Stack,
                                                         tmp_path: Path) -> None:
    from pipeline.documents import Actor
    from pipeline.intake import Intake, receive_stream
    from pipeline.migration.entries import Entry
    from pipeline.migration.ledger import RunLedger
    from pipeline.migration.sources.folder import KEY_PREFIX

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (tree / name).write_bytes(unique_bytes(f"adopt {name}"))
    options = MigrationOptions().fingerprint()
    run_id = run_id_for(tree.resolve(), options)
    # The crash: a.txt reached the spool and the database, but neither the
    # ledger nor the queue heard of it.
    ledger = RunLedger.open(stack.runtime, run_id, tree.resolve(), options)
    entry = Entry(key=KEY_PREFIX + "a.txt", path="a.txt", depth=0)
    spooled = receive_stream(
        stack.runtime, [(tree / "a.txt").read_bytes()],
        Intake(source="migration", original_name="a.txt", source_path="a.txt",
               migration_run_id=run_id),
        Actor.here(), document_id=ledger.document_id(entry))
    ledger.finish("interrupted")

    result = migrate(stack, tree)

    documents = {d.source_path: d for d in run_documents(stack, run_id)}
    assert sorted(documents) == ["a.txt", "b.txt", "c.txt"]
    assert documents["a.txt"].id == spooled.id
    assert {d.status for d in documents.values()} == {"stored"}
    assert result.summary["taken_this_pass"] == 2


def test_an_entry_half_spooled_when_killed_is_taken_whole_on_resume(stack: Stack,
                                                                    tmp_path: Path) -> None:
    from pipeline.migration.entries import Entry
    from pipeline.migration.ledger import RunLedger
    from pipeline.migration.sources.folder import KEY_PREFIX

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a.txt", "b.txt"):
        (tree / name).write_bytes(unique_bytes(f"half {name}"))
    options = MigrationOptions().fingerprint()
    run_id = run_id_for(tree.resolve(), options)
    # The crash: SIGKILL while a.txt was being written into the spool
    ledger = RunLedger.open(stack.runtime, run_id, tree.resolve(), options)
    entry = Entry(key=KEY_PREFIX + "a.txt", path="a.txt", depth=0)
    partial = stack.runtime.spool.open_incoming(ledger.document_id(entry), 1 << 20)
    partial.write(b"the first half of a")
    ledger.finish("interrupted")

    result = migrate(stack, tree)

    assert result.returncode == 0, result.stderr
    documents = {d.source_path: d for d in run_documents(stack, run_id)}
    assert documents["a.txt"].status == "stored"
    assert documents["a.txt"].file_size == (tree / "a.txt").stat().st_size
    assert not partial.path.exists()


@pytest.mark.parametrize("wait", ["--wait", "--no-wait"])
def test_timeout_bounds_the_wait_for_room_under_max_in_flight(
        stack: Stack, tmp_path: Path, wait: str) -> None:
    import time

    tree = small_tree(tmp_path / "tree", f"no room {wait}", count=5)
    started = time.monotonic()

    # No worker: after two documents there is never room again; --timeout must end it.
    gave_up = migrate(stack, tree, wait, "--max-in-flight", "2", "--timeout", "3",
                      env=no_worker_env(), timeout=60)

    assert gave_up.returncode == 1, gave_up.stderr
    assert time.monotonic() - started < 45
    assert gave_up.summary["status"] == "timed_out"
    assert gave_up.summary["pending"] == 2 and gave_up.summary["exit_code"] == 1
    assert "run the same command again" in gave_up.summary["note"]
    assert "run the same command again" in gave_up.report["summary"]["note"]
    assert "run the same command again" in gave_up.stderr

    picked_up = migrate(stack, tree, "--timeout", "120")

    assert picked_up.returncode == 0, picked_up.stderr
    assert picked_up.summary["taken_this_pass"] == 3
    assert picked_up.summary["pending"] == 0 and picked_up.summary["note"] is None
    assert sorted(e["outcome"] for e in picked_up.report["entries"]) == ["stored"] * 5


def test_a_rerun_counts_what_the_last_pass_left_in_flight(stack: Stack,
                                                          tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", "rerun in flight", count=5)
    env = no_worker_env()
    first = migrate(stack, tree, "--max-in-flight", "2", "--timeout", "2", env=env,
                    timeout=60)
    assert first.returncode == 1 and first.summary["pending"] == 2, first.stderr

    # Still no worker: the two left pending fill --max-in-flight already.
    again = migrate(stack, tree, "--max-in-flight", "2", "--timeout", "2", env=env,
                    timeout=60)

    assert again.returncode == 1, again.stderr
    assert again.summary["taken_this_pass"] == 0
    assert again.summary["pending"] == 2
