"""The origin clinic API's own curl commands, run against Sluice as they are written.

Each command below is copied from the origin's document; the test changes only
the host (``https://localhost:8000``) and adds the bearer token to requests aimed
at the API, never to the pre-signed download link. Processing is asynchronous in
Sluice, so the test waits for the upload to be stored before downloading it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api_server import TOKEN, ApiServer, serve
from tests.support.documents import make_pdf
from tests.support.stack import Stack

ORIGIN_HOST = "https://localhost:8000"
ORIGIN_CONTENT = b"This is a test document for Nexus Core Clinic S3 integration!"

BUCKET_STATUS = "curl https://localhost:8000/api/documents/bucket_status/ -k"
UPLOAD = """curl -X POST https://localhost:8000/api/documents/upload/ \\
  -F "file=@test-document.txt" \\
  -F "category=medical" \\
  -F "description=Test upload" \\
  -F "uploaded_by=admin" \\
  -k"""
LIST = "curl https://localhost:8000/api/documents/ -k"
DOWNLOAD = """# Step 1: Get download URL
DOWNLOAD_URL=$(curl https://localhost:8000/api/documents/{doc_id}/download_url/ -k | jq -r '.download_url')

# Step 2: Download file
curl "$DOWNLOAD_URL" -o downloaded_file.pdf"""
PATIENT_UPLOAD = """curl -X POST https://localhost:8000/api/documents/upload/ \\
  -F "file=@patient_record.pdf" \\
  -F "category=medical" \\
  -F "description=Annual physical exam results" \\
  -F "uploaded_by=dr_smith" \\
  -F "content_type_id=10" \\
  -F "object_id=patient_uuid_here" \\
  -k"""
PATIENT_LIST = 'curl "https://localhost:8000/api/documents/?content_type_id=10&object_id=patient_uuid_here" -k'
DETAIL = "curl https://localhost:8000/api/documents/{id}/ -k"
DELETE = "curl -X DELETE https://localhost:8000/api/documents/{id}/ -k"

pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")),
                                reason="needs the curl and jq programs")


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ApiServer]:
    server = serve(stack)
    yield server
    server.stop()


# Adds the token to the commands aimed at the API, and -sS to keep errors visible.
CURL_WITH_TOKEN = """
curl() {
  if [[ "$*" == *"$SLUICE_API"* ]]; then
    command curl -sS --fail-with-body -H "Authorization: Bearer $SLUICE_TOKEN" "$@"
  else
    command curl -sS --fail-with-body "$@"
  fi
}
"""


def run(api: ApiServer, command: str, cwd: Path, **ids: str) -> str:
    """Run an origin command in bash, with our host, our token and the ids it names."""
    for name, value in ids.items():
        command = command.replace(f"{{{name}}}", value)
    command = command.replace(ORIGIN_HOST, api.url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", CURL_WITH_TOKEN + command], cwd=cwd,
        capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "SLUICE_API": api.url, "SLUICE_TOKEN": TOKEN},
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_origin_workflow_runs_with_its_own_curl_commands(api: ApiServer, tmp_path: Path) -> None:
    (tmp_path / "test-document.txt").write_bytes(ORIGIN_CONTENT)

    status = json.loads(run(api, BUCKET_STATUS, tmp_path))
    assert status["accessible"] is True
    assert status["bucket_name"] == api.settings.storage.bucket

    uploaded = json.loads(run(api, UPLOAD, tmp_path))
    assert uploaded["original_name"] == "test-document.txt"
    assert uploaded["file_size"] == len(ORIGIN_CONTENT)
    document = api.wait_final(uploaded["id"])
    assert document["mime_type"] == "text/plain"
    assert document["s3_key"].startswith("documents/")

    listed = json.loads(run(api, LIST, tmp_path))
    assert uploaded["id"] in [row["id"] for row in listed["results"]]
    detail = json.loads(run(api, DETAIL, tmp_path, id=uploaded["id"]))
    assert detail["category"] == "medical" and detail["uploaded_by"] == "admin"

    run(api, DOWNLOAD, tmp_path, doc_id=uploaded["id"])
    assert (tmp_path / "downloaded_file.pdf").read_bytes() == ORIGIN_CONTENT

    run(api, DELETE, tmp_path, id=uploaded["id"])
    assert json.loads(run(api, DETAIL, tmp_path, id=uploaded["id"]))["is_active"] is False


def test_origin_patient_example_links_a_record_to_a_patient(api: ApiServer,
                                                            tmp_path: Path) -> None:
    (tmp_path / "patient_record.pdf").write_bytes(make_pdf("Annual physical exam results"))

    uploaded = json.loads(run(api, PATIENT_UPLOAD, tmp_path))
    assert uploaded["content_type_id"] == 10
    assert uploaded["object_id"] == "patient_uuid_here"

    listed = json.loads(run(api, PATIENT_LIST, tmp_path))
    assert [row["id"] for row in listed["results"]] == [uploaded["id"]]
    assert api.wait_final(uploaded["id"])["status"] == "stored"
