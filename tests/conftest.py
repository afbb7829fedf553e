"""Fixtures: Sluice on its embedded defaults and on PostgreSQL + Redis + moto S3.

Every test that takes ``stack`` runs twice, once per backend, against real
services on loopback: a SQLite file and a SQLite broker, or PostgreSQL, Redis
and a moto S3 server started here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pipeline.settings import Settings
from tests.support.services import (
    AWS_TEST_ENV,
    MotoServer,
    postgres_database,
    redis_url,
    unique_queue,
)
from tests.support.stack import Stack

CORPUS = Path(__file__).parent / "corpus"
BUCKET = "sluice-test"

os.environ.update(AWS_TEST_ENV)


@pytest.fixture(scope="session")
def manifest() -> dict[str, dict]:
    entries = json.loads((CORPUS / "manifest.json").read_text())
    return {entry["path"]: entry for entry in entries}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def make_bucket(endpoint: str, name: str = BUCKET) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


def embedded_settings(root: Path, **overrides: object) -> Settings:
    values = {"var_dir": root / "var", "inbox": root / "inbox", "api_tokens": ("test-token",)}
    return Settings(_env_file=None, **{**values, **overrides})


def services_settings(root: Path, pg: str, moto: MotoServer, **overrides: object) -> Settings:
    values = {"database_url": pg, "broker_url": redis_url(), "queue_name": unique_queue(),
              "storage_url": f"s3://{BUCKET}", "s3_endpoint_url": moto.url}
    return embedded_settings(root, **{**values, **overrides})


@pytest.fixture(scope="session", params=["embedded", "services"])
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Sluice with a running worker (2 processes), on one backend per parameter."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        settings = embedded_settings(root)
    else:
        moto = request.getfixturevalue("moto_server")
        make_bucket(moto.url)
        settings = services_settings(root, request.getfixturevalue("pg_url"), moto)
    running = Stack(request.param, settings, root)
    running.start_worker()
    yield running
    running.close()


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A writable copy of the test corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


FAULT_TABLE: list[dict] = []


@pytest.fixture(scope="session")
def fault_report() -> list[dict]:
    """Rows of the fault table; printed at the end of the session."""
    return FAULT_TABLE


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest hook
    if not FAULT_TABLE:
        return
    write = terminalreporter.write_line
    write("")
    write("| fault | runs | documents in | stored once | duplicates | lost |")
    write("| --- | --- | --- | --- | --- | --- |")
    for row in FAULT_TABLE:
        write(f"| {row['fault']} | {row['runs']} | {row['in']} | {row['stored_once']} "
              f"| {row['duplicates']} | {row['lost']} |")
