"""The command, the nightly task, the lock and the reports, as operators see them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.db.models import ReconciliationRun
from pipeline.reconcile import AlreadyRunning, RunOptions, reconcile
from pipeline.runtime import Runtime
from tests.reconcile_helpers import about, findings, run
from tests.support.raw_bucket import RawBucket
from tests.support.stack import Stack

QUIET = ("--sample", "0", "--stuck-after", "86400")


def sluice(stack: Stack, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args],
                          env={**stack.env, **(env or {})}, cwd=stack.root,
                          capture_output=True, text=True, timeout=180)


def test_cli_exits_3_with_findings_and_0_when_clean(stack: Stack,
                                                   tmp_path: Path) -> None:
    raw = RawBucket(stack.runtime.store)
    stray = f"{stack.settings.storage.prefix}documents/{uuid.uuid4()}.pdf"
    raw.put(stray, b"stray")
    output = tmp_path / "report.csv"
    try:
        found = sluice(stack, "reconcile", "--grace", "0", "--format", "csv",
                       "--output", str(output), *QUIET)
    finally:
        raw.delete(stray)
    clean = sluice(stack, "reconcile", *QUIET)

    assert found.returncode == 3, found.stderr
    rows = [row for row in csv.DictReader(output.open()) if row["key"] == stray]
    assert rows[0]["kind"] == "orphan_object"
    assert "--repair orphan_object" in rows[0]["advice"]
    assert "findings (orphan_object" in found.stderr

    assert clean.returncode == 0, clean.stderr + clean.stdout[-2000:]
    report = json.loads(clean.stdout)
    assert report["findings"] == []
    assert report["run"]["findings_total"] == 0
    assert report["run"]["options"]["sample_size"] == 0
    assert Path(report["run"]["reports"]["json"]).exists()
    assert Path(report["run"]["reports"]["csv"]).exists()


def test_cli_exits_1_when_the_bucket_cannot_be_read(stack: Stack) -> None:
    if not RawBucket(stack.runtime.store).is_s3:
        pytest.skip("a local folder that cannot be read needs a non-root user")
    failed = sluice(stack, "reconcile", *QUIET,
                    env={"SLUICE_STORAGE_URL": "s3://no-such-bucket-here"})

    assert failed.returncode == 1
    assert "NoSuchBucket" in failed.stderr
    with stack.runtime.session() as session:
        last = session.scalars(select(ReconciliationRun)
                               .order_by(ReconciliationRun.id.desc()).limit(1)).one()
    assert last.status == "failed" and "NoSuchBucket" in last.error
    assert run(stack, sample_size=0).run_id > last.id, "the lock was released"


def test_second_start_says_so_and_exits_while_one_runs(stack: Stack) -> None:
    started, release = threading.Event(), threading.Event()
    first: dict[str, object] = {}

    def hold(run_id: int) -> None:
        first["run_id"] = run_id
        started.set()
        release.wait(120)

    def run_first() -> None:
        options = RunOptions.from_settings(stack.settings, trigger="test",
                                           sample_size=0)
        first["result"] = reconcile(stack.runtime, options, on_started=hold)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(AlreadyRunning, match=f"run {first['run_id']} started"):
            run(stack, sample_size=0)
        second = sluice(stack, "reconcile", *QUIET)
    finally:
        release.set()
        thread.join(120)

    assert second.returncode == 1
    assert f"run {first['run_id']} started" in second.stderr
    assert "did not start" in second.stderr
    assert first["result"].run_id == first["run_id"]
    assert run(stack, sample_size=0).run_id > first["run_id"]


def test_reports_are_kept_in_the_bucket_when_configured(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"reports_prefix": "reports/"})
    runtime = Runtime(settings)
    try:
        result = reconcile(runtime, RunOptions.from_settings(settings, sample_size=0))
        keys = [result.reports["json_key"], result.reports["csv_key"]]
        stored = [runtime.store.head(key) for key in keys]
        again = findings(stack, run(stack, sample_size=0, orphan_grace_seconds=0,
                                    stuck_after_seconds=86400))
    finally:
        for key in (result.reports.get("json_key"), result.reports.get("csv_key")):
            if key:
                runtime.store.delete(key)
        runtime.close()

    name = f"reconciliation-{result.run_id:06d}.json"
    assert keys[0] == f"{settings.storage.prefix}reports/{name}"
    assert all(info is not None and info.size > 0 for info in stored)
    assert about(again, keys=set(keys)) == set(), "reports are never orphans"


def test_nightly_task_is_scheduled_and_runs_a_reconciliation(stack: Stack) -> None:
    entry = stack.app.conf.beat_schedule["reconcile"]
    assert "sweep" in stack.app.conf.beat_schedule
    assert entry["task"] == "sluice.reconcile"
    assert (entry["schedule"].minute, entry["schedule"].hour) == ({30}, {2})

    with stack.runtime.session() as session:
        before = session.scalar(select(ReconciliationRun.id)
                                .order_by(ReconciliationRun.id.desc()).limit(1)) or 0
    stack.app.send_task("sluice.reconcile")

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with stack.runtime.session() as session:
            done = session.scalars(select(ReconciliationRun).where(
                ReconciliationRun.id > before, ReconciliationRun.trigger == "beat",
                ReconciliationRun.status == "finished")).all()
        if done:
            break
        time.sleep(0.2)
    assert done, stack.worker_log.read_text()[-3000:]
    assert done[0].options["sample_size"] == stack.settings.reconcile_sample_size
