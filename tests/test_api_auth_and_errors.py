"""Who may call the API, and how every refusal reads: JSON, the right status, no trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.api_server import ApiServer, serve
from tests.support.documents import unique_word
from tests.support.stack import Stack

OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs")


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ApiServer]:
    server = serve(stack)
    yield server
    server.stop()


def protected_operations(api: ApiServer) -> list[tuple[str, str]]:
    """Every operation of the published API that is not a health check or a file link."""
    schema = httpx.get(f"{api.url}/openapi.json").json()
    some_id = str(uuid.uuid4())
    operations = []
    for path, methods in schema["paths"].items():
        if path in OPEN_PATHS or path.startswith("/files/"):
            continue
        for method in methods:
            operations.append((method.upper(), path.replace("{document_id}", some_id)))
    return operations


def assert_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == code
    assert "Traceback" not in answer.text


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic dGVzdA==",
                                           "Bearer"])
def test_every_document_endpoint_refuses_a_missing_or_wrong_token(
        api: ApiServer, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    operations = protected_operations(api)
    assert len(operations) >= 8

    for method, path in operations:
        answer = httpx.request(method, f"{api.url}{path}", headers=headers)
        assert_error(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_health_checks_and_docs_need_no_token(api: ApiServer) -> None:
    for path in OPEN_PATHS:
        assert httpx.get(f"{api.url}{path}").status_code == 200, path

    ready = httpx.get(f"{api.url}/readyz").json()
    assert ready["status"] == "ready"
    assert set(ready["checks"]) == {"database", "broker", "bucket"}


def test_without_configured_tokens_the_api_refuses_every_request(stack: Stack) -> None:
    closed = serve(stack, api_tokens=())
    try:
        answer = closed.client.get("/api/documents/")
        assert_error(answer, 401, "no_tokens_configured")
        assert httpx.get(f"{closed.url}/healthz").status_code == 200
    finally:
        closed.stop()


def test_readyz_answers_503_and_names_the_service_that_is_down(stack: Stack) -> None:
    broken = serve(stack, broker_url="redis://127.0.0.1:1/0")
    try:
        answer = httpx.get(f"{broken.url}/readyz", timeout=60)
        assert answer.status_code == 503
        checks = answer.json()["checks"]
        assert checks["broker"]["ok"] is False
        assert checks["database"]["ok"] is True
    finally:
        broken.stop()


def test_unknown_documents_and_paths_get_json_404s(api: ApiServer) -> None:
    missing = uuid.uuid4()
    for path in (f"/api/documents/{missing}/", f"/api/documents/{missing}/download_url/",
                 f"/api/documents/{missing}/text/", f"/api/documents/{missing}/thumbnail_url/"):
        assert_error(api.client.get(path), 404, "not_found")
    assert_error(api.client.delete(f"/api/documents/{missing}/"), 404, "not_found")
    assert_error(api.client.get("/api/nothing-here/"), 404, "not_found")


def test_malformed_requests_get_json_422s(api: ApiServer) -> None:
    assert_error(api.client.get("/api/documents/not-a-uuid/"), 422, "invalid_request")
    assert_error(api.client.get("/api/documents/", params={"limit": 0}), 422,
                 "invalid_request")
    assert_error(api.client.get("/api/documents/", params={"q": "a\x00b"}), 422,
                 "invalid_request")
    assert_error(api.client.get("/api/documents/", params={
        "uploaded_after": "0001-01-01T00:00:00+01:00"}), 422, "invalid_request")
    assert_error(api.client.put("/api/documents/"), 405, "method_not_allowed")


def test_deleted_documents_have_no_links_or_text(api: ApiServer) -> None:
    document = api.wait_final(api.upload("gone.txt", unique_word().encode()).json()["id"])
    api.client.delete(f"/api/documents/{document['id']}/")

    for link in ("download_url", "thumbnail_url", "text"):
        assert_error(api.client.get(f"/api/documents/{document['id']}/{link}/"), 404,
                     "deleted")


def test_local_download_links_refuse_a_tampered_or_expired_signature(
        stack: Stack, api: ApiServer) -> None:
    if stack.name != "embedded":
        pytest.skip("S3 signs its own links; moto does not check them")
    document = api.wait_final(api.upload("signed.txt", unique_word().encode()).json()["id"])
    link = api.client.get(f"/api/documents/{document['id']}/download_url/",
                          params={"expires_in": 60}).json()["download_url"]
    parts = urlsplit(link)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}

    def fetch(**changes: str) -> httpx.Response:
        return httpx.get(f"{api.url}{parts.path}?{urlencode({**query, **changes})}")

    assert fetch().status_code == 200
    assert_error(fetch(name="evil.html"), 403, "bad_signature")
    assert_error(fetch(expires=str(int(query["expires"]) + 3600)), 403, "bad_signature")
    assert_error(fetch(signature="0" * 64), 403, "bad_signature")
    assert_error(httpx.get(f"{api.url}/files/..%2F..%2Fetc%2Fpasswd", params=query), 403,
                 "bad_signature")


def test_an_expired_local_link_is_refused(stack: Stack, api: ApiServer) -> None:
    if stack.name != "embedded":
        pytest.skip("S3 signs its own links")
    document = api.wait_final(api.upload("old.txt", unique_word().encode()).json()["id"])
    store = api.app.state.services.runtime.store
    expired = store.presign_get(document["s3_key"], expires_in=-5,
                                filename="old.txt", content_type="text/plain")

    assert_error(httpx.get(expired), 403, "expired")
