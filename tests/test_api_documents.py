"""The document API end to end: a real server on loopback, a real client, a real worker."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from api.auth import fingerprint
from pipeline.db.models import DocumentEvent
from tests.support.api_server import TOKEN, ApiServer, serve
from tests.support.documents import make_pdf, unique_word
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ApiServer]:
    server = serve(stack)
    yield server
    server.stop()


def download(url: str) -> httpx.Response:
    # No bearer token: the pre-signed URL is the credential, as with S3.
    answer = httpx.get(url, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def test_upload_poll_list_download_delete(stack: Stack, api: ApiServer) -> None:
    content = make_pdf(f"Annual physical exam {unique_word()}")
    patient = str(uuid.uuid4())

    # Given a clinic system that uploads a patient's record with a link
    sent = api.upload("patient_record.pdf", content, category="medical",
                      description="Annual physical exam results", uploaded_by="dr_smith",
                      content_type_id=10, object_id=patient, tags='["annual", "2026"]')
    assert sent.status_code == 202, sent.text
    received = sent.json()
    assert received["status"] == "received"
    assert received["sha256"] == hashlib.sha256(content).hexdigest()
    assert sent.headers["location"] == received["poll_url"]

    # When it polls, then the worker has stored it with a thumbnail
    document = api.wait_final(received["id"])
    assert document["status"] == "stored", document["error"]
    assert document["mime_type"] == "application/pdf"
    assert document["thumbnail_key"]
    assert document["tags"] == ["annual", "2026"]

    # The patient's documents are found by the link
    listed = api.client.get("/api/documents/",
                            params={"content_type_id": 10, "object_id": patient}).json()
    assert listed["count"] == 1
    assert [row["id"] for row in listed["results"]] == [document["id"]]

    # The bytes come back through the pre-signed URL, as an attachment
    link = api.client.get(f"/api/documents/{document['id']}/download_url/").json()
    downloaded = download(link["download_url"])
    assert hashlib.sha256(downloaded.content).hexdigest() == document["sha256"]
    assert downloaded.headers["content-disposition"].startswith("attachment")
    assert api.client.get(f"/api/documents/{document['id']}/thumbnail_url/").status_code == 200

    # Deleting removes the original and the thumbnail from the bucket
    assert api.client.delete(f"/api/documents/{document['id']}/").status_code == 204
    assert stack.runtime.store.head(document["s3_key"]) is None
    assert stack.runtime.store.head(document["thumbnail_key"]) is None
    listed = api.client.get("/api/documents/",
                            params={"content_type_id": 10, "object_id": patient}).json()
    assert listed["count"] == 0
    shown = api.client.get(f"/api/documents/{document['id']}/").json()
    assert shown["is_active"] is False

    # Deleting twice is harmless
    assert api.client.delete(f"/api/documents/{document['id']}/").status_code == 204
    deleted_again = api.client.get("/api/documents/", params={
        "object_id": patient, "include_deleted": "true"}).json()
    assert deleted_again["count"] == 1


def test_upload_records_the_token_fingerprint_never_the_token(stack: Stack,
                                                               api: ApiServer) -> None:
    sent = api.upload("note.txt", f"note {unique_word()}".encode(), uploaded_by="reception")
    document_id = uuid.UUID(sent.json()["id"])
    api.wait_final(str(document_id))

    with stack.runtime.session() as session:
        details = session.scalars(select(DocumentEvent.detail).where(
            DocumentEvent.document_id == document_id, DocumentEvent.event == "uploaded")).all()
    assert details == [{"via": "http", "token": fingerprint(TOKEN)}]
    assert TOKEN not in str(details)
    assert sent.json()["uploaded_by"] == "reception"


def test_known_content_is_answered_at_once_as_a_duplicate(api: ApiServer) -> None:
    content = f"referral letter {unique_word()}".encode()
    first = api.wait_final(api.upload("referral.txt", content).json()["id"])
    assert first["status"] == "stored"

    again = api.upload("referral-copy.txt", content, object_id="patient-2")
    assert again.status_code == 202
    duplicate = again.json()
    assert duplicate["status"] == "duplicate"
    assert duplicate["duplicate_of"] == first["id"]

    # The duplicate's bytes are the original's, under the duplicate's own name
    link = api.client.get(f"/api/documents/{duplicate['id']}/download_url/").json()
    downloaded = download(link["download_url"])
    assert downloaded.content == content
    assert "referral-copy.txt" in downloaded.headers["content-disposition"]


def test_deleting_a_stored_document_hands_its_content_to_a_live_duplicate(
        stack: Stack, api: ApiServer) -> None:
    content = f"consent form {unique_word()}".encode()
    original = api.wait_final(api.upload("consent.txt", content).json()["id"])
    duplicate = api.upload("consent-again.txt", content).json()
    assert duplicate["status"] == "duplicate"

    assert api.client.delete(f"/api/documents/{original['id']}/").status_code == 204

    heir = api.client.get(f"/api/documents/{duplicate['id']}/").json()
    assert heir["status"] == "stored"
    assert heir["s3_key"] == original["s3_key"]
    assert stack.runtime.store.head(original["s3_key"]) is not None
    link = api.client.get(f"/api/documents/{duplicate['id']}/download_url/").json()
    assert download(link["download_url"]).content == content


def test_full_text_search_finds_a_pdf_by_a_word_of_its_text(api: ApiServer) -> None:
    word = unique_word("zebrafish")
    sent = api.upload("scan_0042.pdf", make_pdf(f"Histology report {word} negative"))
    document = api.wait_final(sent.json()["id"])
    assert document["status"] == "stored"

    def found(query: str) -> list[str]:
        page = api.client.get("/api/documents/", params={"q": query, "limit": 500}).json()
        return [row["id"] for row in page["results"]]

    assert found(word) == [document["id"]]
    assert found(f'"report {word}"') == [document["id"]]
    assert found(f"{word} -histology") == []
    assert document["id"] in found("scan_0042")
    text = api.client.get(f"/api/documents/{document['id']}/text/").json()
    assert word in text["text"]


def test_non_ascii_names_survive_into_content_disposition(api: ApiServer) -> None:
    name = "Befund Müller – 東京 «x».txt"
    sent = api.upload(name, f"résumé {unique_word()}".encode())
    document = api.wait_final(sent.json()["id"])
    assert document["original_name"] == name

    link = api.client.get(f"/api/documents/{document['id']}/download_url/").json()
    disposition = download(link["download_url"]).headers["content-disposition"]
    assert disposition.startswith("attachment;")
    encoded = disposition.split("filename*=UTF-8''", 1)[1].split(";")[0]
    assert unquote(encoded) == name


def test_list_is_newest_first_and_paginated_with_a_total(api: ApiServer) -> None:
    batch = unique_word("batch")
    ids = [api.upload(f"page-{n}.txt", f"{batch} page {n}".encode(),
                      uploaded_by=batch).json()["id"] for n in range(3)]

    first = api.client.get("/api/documents/",
                           params={"uploaded_by": batch, "limit": 2}).json()
    assert first["count"] == 3
    assert [row["id"] for row in first["results"]] == ids[::-1][:2]
    assert first["next"] and first["previous"] is None
    second = httpx.get(first["next"], headers=api.client.headers).json()
    assert [row["id"] for row in second["results"]] == [ids[0]]
    assert second["next"] is None


def test_download_url_expiry_defaults_to_an_hour_and_is_capped(api: ApiServer) -> None:
    document = api.wait_final(api.upload("x.txt", unique_word().encode()).json()["id"])
    path = f"/api/documents/{document['id']}/download_url/"

    assert api.client.get(path).json()["expires_in"] == 3600
    assert api.client.get(path, params={"expires_in": 60}).json()["expires_in"] == 60
    capped = api.client.get(path, params={"expires_in": 10**9}).json()
    assert capped["expires_in"] == api.settings.presign_max_expiry_seconds


def test_a_document_has_the_same_fields_in_the_api_and_in_sluice_show(
        stack: Stack, api: ApiServer) -> None:
    from tests.test_cli import sluice

    sent = api.upload("fields.pdf", make_pdf(f"fields {unique_word()}"))
    document = api.wait_final(sent.json()["id"])
    shown = json.loads(sluice(stack, "show", document["id"], "--json").stdout)
    listed = api.client.get("/api/documents/", params={"limit": 500}).json()["results"]
    (row,) = [row for row in listed if row["id"] == document["id"]]

    assert set(document) == set(shown)
    assert set(row) == set(shown)
    assert {"source_modified_at", "migration_run_id"} <= set(document)
    assert document == shown
