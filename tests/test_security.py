"""Private, encrypted objects; short-lived links; no secret in any log line."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import CORPUS, services_settings
from tests.support.services import AWS_TEST_ENV
from tests.support.stack import Stack


@pytest.fixture
def services(stack: Stack) -> Stack:
    if stack.name != "services":
        pytest.skip("bucket behaviour")
    return stack


def stored_pdf(stack: Stack, tmp_path: Path) -> object:
    path = tmp_path / "secure.pdf"
    path.write_bytes((CORPUS / "pdf" / "testPDF.pdf").read_bytes() + f"\n% {uuid.uuid4()}".encode())
    document_id = stack.ingest(path)
    return stack.wait([document_id])[document_id]


def test_objects_are_encrypted_and_refuse_unsigned_reads(services: Stack, tmp_path: Path) -> None:
    document = stored_pdf(services, tmp_path)
    store = services.runtime.store

    for key in (document.s3_key, document.thumbnail_key):
        assert store.head(key).sse == "AES256"
        grants = store.client.get_object_acl(Bucket=store.bucket, Key=key)["Grants"]
        assert all(g["Grantee"].get("Type") == "CanonicalUser" for g in grants)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{services.settings.s3_endpoint_url}/{store.bucket}/{key}")
        assert refused.value.code == 403


def test_download_links_are_signed_short_lived_attachments(services: Stack,
                                                           tmp_path: Path) -> None:
    document = stored_pdf(services, tmp_path)
    url = services.runtime.store.presign_get(document.s3_key, expires_in=3600,
                                             filename="Befund Müller.pdf",
                                             content_type=document.mime_type)
    query = parse_qs(urlparse(url).query)

    # moto does not verify signatures, so the signing parameters are checked here.
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["3600"]
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''Befund%20M%C3%BCller.pdf" in disposition
    assert urllib.request.urlopen(url).read() == (tmp_path / "secure.pdf").read_bytes()


def test_no_credential_or_token_appears_in_any_log_line(
        moto_server, pg_url: str, tmp_path: Path) -> None:
    # Trust auth ignores the password, so a real one can ride along in the URL.
    database_url = pg_url.replace("postgres@", "postgres:pg-secret-PW-1234@")
    # A bucket that does not exist: every upload fails, and failures get logged.
    settings = services_settings(tmp_path, database_url, moto_server,
                                 storage_url="s3://no-such-bucket",
                                 api_tokens=("api-token-SECRET-99",))
    secrets = ["pg-secret-PW-1234", "api-token-SECRET-99",
               AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"]]
    stack = Stack("services", settings, tmp_path)
    stack.start_worker()
    try:
        good = tmp_path / "fine.pdf"
        good.write_bytes((CORPUS / "pdf" / "testPDF.pdf").read_bytes()
                         + f"\n% {uuid.uuid4()}".encode())
        cli = subprocess.run(
            [sys.executable, "-m", "cli.main", "--log-level", "DEBUG", "ingest", str(good),
             str(CORPUS / "hostile" / "truncated.pdf"), "--wait", "--timeout", "15"],
            env=stack.env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        stack.close()

    logs = cli.stdout + cli.stderr + stack.worker_log.read_text()
    assert "task_id=" in logs and "document_id=" in logs
    assert "bucket put failed" in logs, "the error path was exercised"
    for secret in secrets:
        assert secret not in logs
