"""Helpers for the migration tests: a fresh Sluice per module, archives built on
the spot, the CLI run in a subprocess, and reading what a run left behind."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.db.models import Document, MigrationEntry
from tests.support.services import postgres_database
from tests.support.stack import REPO, Stack

FIXED_MTIME = 1300094814


def fresh_stack(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Like ``stack`` (``request.param`` names the backend), with an empty database
    and bucket of its own.

    The session ``stack`` already holds the corpus files that the legacy archives
    copy, so there they would all come in as duplicates.
    """
    from tests.conftest import embedded_settings, make_bucket, services_settings

    root = tmp_path_factory.mktemp(f"migrate-{request.param}")
    with ExitStack() as cleanup:
        if request.param == "embedded":
            settings = embedded_settings(root)
        else:
            moto = request.getfixturevalue("moto_server")
            bucket = f"sluice-migrate-{secrets.token_hex(4)}"
            make_bucket(moto.url, bucket)
            database = cleanup.enter_context(postgres_database())
            settings = services_settings(root, database, moto, storage_url=f"s3://{bucket}")
        running = Stack(request.param, settings, root)
        cleanup.callback(running.close)
        running.start_worker()
        yield running


@dataclass
class Migration:
    """What one ``sluice migrate`` run printed, returned and wrote."""

    returncode: int
    stdout: str
    stderr: str
    summary: dict | None

    @property
    def report(self) -> dict:
        return json.loads(Path(self.summary["report_json"]).read_text())

    @property
    def entries(self) -> dict[str, dict]:
        """Report entries by path (archives included, outcome ``unpacked``)."""
        return {entry["path"]: entry for entry in self.report["entries"]}

    @property
    def run_id(self) -> uuid.UUID:
        return uuid.UUID(self.summary["run_id"])


def migrate(stack: Stack, source: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> Migration:
    """Run ``sluice migrate SOURCE --json ARGS`` against the stack, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate", str(source), "--json", *args],
        env={**stack.env, **(env or {})}, cwd=stack.root, capture_output=True,
        text=True, timeout=timeout,
    )
    summary = None
    if result.stdout.strip().startswith("{"):
        summary = json.loads(result.stdout.strip().splitlines()[-1])
    return Migration(result.returncode, result.stdout, result.stderr, summary)


def start_migrate(stack: Stack, source: Path, *args: str,
                  env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "migrate", str(source), "--json", *args],
        env={**stack.env, **(env or {})}, cwd=stack.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def no_worker_env() -> dict[str, str]:
    """Settings under which a migration's messages go to a queue no worker reads.

    Its documents stay ``received``: with ``--max-in-flight N`` it holds after N
    documents until it is stopped, and ``--timeout`` always expires. The same
    command run again with the stack's own queue enqueues them anew (the run id
    does not depend on the queue) and the stack's worker finishes them.
    """
    return {"SLUICE_QUEUE_NAME": f"nobody-reads-{secrets.token_hex(6)}"}


def run_documents(stack: Stack, run_id: uuid.UUID) -> list[Document]:
    with stack.runtime.session() as session:
        return list(session.scalars(select(Document).where(
            Document.migration_run_id == run_id)))


def ledger_rows(stack: Stack, run_id: uuid.UUID) -> list[MigrationEntry]:
    with stack.runtime.session() as session:
        return list(session.scalars(select(MigrationEntry).where(
            MigrationEntry.run_id == run_id)))


def stored_sha256s(stack: Stack) -> set[str]:
    with stack.runtime.session() as session:
        return set(session.scalars(select(Document.sha256).where(
            Document.status == "stored", Document.is_active.is_(True))))


def wait_for(condition, timeout: float = 60.0, every: float = 0.05) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def unique_bytes(label: str, size: int = 64) -> bytes:
    """Content no other test stores: a label, then random bytes as text."""
    return f"{label}\n{secrets.token_hex(size)}\n".encode()


def make_zip(path: Path, members: list[tuple[str, bytes]], *, utf8: bool = True,
             unix_mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2011, 3, 14, 9, 26, 54))
            info.compress_type = zipfile.ZIP_DEFLATED
            if unix_mode is not None:
                info.create_system, info.external_attr = 3, unix_mode << 16
            archive.writestr(info, data)
    if not utf8:
        _clear_utf8_flags(path)
    return path


def make_zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, (2011, 3, 14, 9, 26, 54)), data)
    return buffer.getvalue()


def raw_name_zip(path: Path, raw_name: bytes, data: bytes) -> Path:
    """A zip whose one member has ``raw_name`` as its bytes, without the UTF-8 flag."""
    placeholder = "N" * len(raw_name)
    make_zip(path, [(placeholder, data)])
    blob = path.read_bytes().replace(placeholder.encode(), raw_name)
    path.write_bytes(blob)
    _clear_utf8_flags(path)
    return path


def make_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def _clear_utf8_flags(path: Path) -> None:
    """zipfile sets bit 11 for non-ASCII names; legacy tools never did."""
    blob = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (found := blob.find(signature, start)) >= 0:
            at = found + flag_offset
            flags = int.from_bytes(blob[at:at + 2], "little")
            blob[at:at + 2] = (flags & ~0x800).to_bytes(2, "little")
            start = found + 4
    path.write_bytes(bytes(blob))


def repo_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO)}
