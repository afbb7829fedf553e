"""What the API serves about reconciliation: the runs, newest first, and each report."""

from __future__ import annotations

import csv
import io
import json
import uuid

from fastapi.testclient import TestClient

from pipeline.reconcile import records
from pipeline.reconcile.report import report_chunks
from tests.reconcile_helpers import run
from tests.support.raw_bucket import RawBucket
from tests.support.stack import Stack

QUIET = {"sample_size": 0, "stuck_after_seconds": 86400}


def test_runs_are_listed_newest_first_and_reports_hold_the_findings(
        stack: Stack) -> None:
    raw = RawBucket(stack.runtime.store)
    stray = f"{stack.settings.storage.prefix}documents/{uuid.uuid4()}.pdf"
    earlier = run(stack, **QUIET)
    raw.put(stray, b"stray")
    try:
        later = run(stack, orphan_grace_seconds=0, **QUIET)
    finally:
        raw.delete(stray)

    with stack.runtime.session() as session:
        page = records.list_runs(session, limit=2)
    assert [r["id"] for r in page["results"]] == [later.run_id, earlier.run_id]
    assert page["count"] >= 2
    assert page["results"][0]["finding_counts"]["orphan_object"] >= 1

    chunks = report_chunks(stack.runtime.engine, later.run_id, "json")
    report = json.loads("".join(chunks))
    assert report["run"]["id"] == later.run_id
    assert report["run"]["status"] == "finished"
    assert stray in [f["key"] for f in report["findings"]]
    assert len(report["findings"]) == later.findings_total

    text = "".join(report_chunks(stack.runtime.engine, later.run_id, "csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["kind"] for r in rows if r["key"] == stray] == ["orphan_object"]
    assert report_chunks(stack.runtime.engine, 10**9, "json") is None


def test_router_serves_runs_and_reports(stack: Stack) -> None:
    from api.app import create_app

    result = run(stack, **QUIET)
    app = create_app(stack.settings)
    with TestClient(app) as client:
        auth = {"Authorization": "Bearer test-token"}
        runs = client.get("/api/reconciliation/runs/", params={"limit": 1},
                          headers=auth)
        as_csv = client.get(f"/api/reconciliation/runs/{result.run_id}/report/",
                            params={"format": "csv"}, headers=auth)
        as_json = client.get(f"/api/reconciliation/runs/{result.run_id}/report/",
                             headers=auth)
        missing = client.get("/api/reconciliation/runs/999999999/report/", headers=auth)
        anonymous = client.get("/api/reconciliation/runs/")

    assert runs.status_code == 200
    assert runs.json()["results"][0]["id"] == result.run_id
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0].startswith("run_id,kind,document_id,key")
    assert as_json.json()["run"]["id"] == result.run_id
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert anonymous.status_code == 401
