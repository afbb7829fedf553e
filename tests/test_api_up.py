"""``sluice up`` on the embedded defaults: a PDF dropped in the inbox shows up in the API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CORPUS
from tests.support.services import free_port
from tests.support.stack import REPO

pytestmark = pytest.mark.slow

SAMPLE_PDF = CORPUS / "pdf" / "pdflatex-4-pages.pdf"


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    root: Path
    url: str
    log: Path

    @property
    def token(self) -> str:
        return (self.root / "var" / "api_token").read_text().strip()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SLUICE_")}
    env.update({"SLUICE_API_PORT": str(port), "PYTHONPATH": str(REPO),
                "SLUICE_WATCH_SETTLE_SECONDS": "0.5"})
    log = tmp_path / "up.log"
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=tmp_path,
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    running = Up(process, tmp_path, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{running.url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"sluice up did not become ready:\n{running.output()}")
        time.sleep(0.2)
    yield running
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid in descendants(process.pid):
        os.kill(pid, signal.SIGKILL)


def test_up_ingests_a_dropped_pdf_and_stops_everything_on_ctrl_c(up: Up) -> None:
    # The token it printed is the one it keeps, and the API accepts it
    assert f"token:  {up.token}" in up.output()
    assert str((up.root / "inbox").resolve()) in up.output()

    # Given a scanner that drops a real PDF into the inbox
    staged = up.root / "staged.pdf"
    shutil.copyfile(SAMPLE_PDF, staged)
    os.rename(staged, up.root / "inbox" / "scan-0001.pdf")

    # Then the API lists it as stored, with a thumbnail
    with up.client() as client:
        deadline = time.monotonic() + 120
        while True:
            page = client.get("/api/documents/").json()
            stored = [d for d in page["results"] if d["status"] == "stored"]
            if stored or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert stored, up.output()[-3000:]
    assert stored[0]["original_name"] == "scan-0001.pdf"
    assert stored[0]["source"] == "watch"
    assert stored[0]["thumbnail_key"]

    # When Ctrl-C arrives, every child stops and up exits 0
    children = descendants(up.process.pid)
    assert len(children) >= 4
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(timeout=90) == 0, up.output()[-3000:]
    deadline = time.monotonic() + 10
    while any(is_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if is_running(pid)]


def test_a_child_that_dies_is_started_again_and_work_goes_on(up: Up) -> None:
    # Given the OOM killer takes the worker
    # (the worker's main process: its pool processes share its command line)
    worker = next(pid for pid in descendants(up.process.pid)
                  if parent_of(pid) == up.process.pid
                  and Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[3:4] == [b"worker"])
    os.kill(worker, signal.SIGKILL)

    # Then up says so, starts it again, and a PDF dropped afterwards is stored
    deadline = time.monotonic() + 30
    while "the worker stopped unexpectedly" not in up.output():
        assert time.monotonic() < deadline, up.output()[-3000:]
        time.sleep(0.2)
    assert up.process.poll() is None
    shutil.copyfile(SAMPLE_PDF, up.root / "staged.pdf")
    os.rename(up.root / "staged.pdf", up.root / "inbox" / "after-restart.pdf")
    with up.client() as client:
        deadline = time.monotonic() + 120
        while True:
            page = client.get("/api/documents/").json()
            if any(d["status"] == "stored" for d in page["results"]):
                break
            assert time.monotonic() < deadline, up.output()[-3000:]
            time.sleep(0.3)


def slow_upload(up: Up, stop: threading.Event) -> None:
    """An upload that trickles a byte a second, as a stalled client would."""
    boundary = "trickle"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"slow.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode()
    port = int(up.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            f"POST /api/documents/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {up.token}\r\nContent-Length: 100000\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + head)
        while not stop.wait(1.0):
            try:
                connection.sendall(b"x")
            except OSError:
                return


def test_up_killed_outright_leaves_no_child_behind(up: Up) -> None:
    children = descendants(up.process.pid)
    assert len(children) >= 4
    # ...even an API in the middle of a stalled upload
    stop = threading.Event()
    trickle = threading.Thread(target=slow_upload, args=(up, stop), daemon=True)
    trickle.start()
    time.sleep(2)

    # When up itself is SIGKILLed, so that it can stop nothing
    up.process.kill()
    up.process.wait()

    # Then the kernel stops its children, and they stop theirs
    deadline = time.monotonic() + 45
    while any(is_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    assert not [pid for pid in children if is_running(pid)]


def test_a_child_that_cannot_start_stops_everything_and_exits_1(tmp_path: Path) -> None:
    # Given the API's port is already taken by another program
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("SLUICE_")}
        env.update({"SLUICE_API_PORT": str(port), "PYTHONPATH": str(REPO)})

        result = subprocess.run([sys.executable, "-m", "cli.main", "up"], cwd=tmp_path,
                                env=env, capture_output=True, timeout=180)

    # Then up gives up after a few tries and says why
    assert result.returncode == 1, result.stderr[-3000:]
    assert b"the API keeps stopping right after it starts" in result.stderr
    assert f"127.0.0.1:{port} taken".encode() in result.stderr
    assert b"SLUICE_API_PORT" in result.stderr
