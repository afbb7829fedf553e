"""Run the readers in a child process with a deadline and a memory limit.

A PDF built to loop forever costs one ``timeout``; a compression bomb costs one
``decompression_bomb``. Either way the child is killed and replaced, and the
worker that asked carries on. One child per worker process, reused across files
(starting Python and importing the readers takes about 0.3 s).
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import subprocess
import sys
import time
from pathlib import Path

from pipeline.errors import DecompressionBomb, ParseTimeout, Unreadable, permanent_error
from pipeline.extract import Extraction
from pipeline.extract.server import HEADER, write_message

log = logging.getLogger(__name__)

# Starting Python and importing PDFium and Pillow; generous for a loaded machine.
STARTUP_SECONDS = 60.0
# Copying an answer out of the pipe once the child has started sending it.
ANSWER_GRACE_SECONDS = 30.0


class Sandbox:
    def __init__(self, timeout_seconds: float, memory_mb: int):
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._to_child = -1
        self._from_child = -1
        self._deadline = 0.0

    def read(self, path: Path, mime_type: str, charset: str | None, max_px: int) -> Extraction:
        """Read ``path`` in the child; raise a PermanentError for what it refuses."""
        self.start(path, mime_type, charset, max_px)
        return self.finish()

    def start(self, path: Path, mime_type: str, charset: str | None, max_px: int) -> None:
        """Hand ``path`` to the child and return at once; ``finish`` collects the answer.

        The caller may work meanwhile (upload the original) while the child reads
        on the other core. It must then call ``finish``, or ``stop`` if it gives up.
        """
        self._ensure_started()
        request = {"path": str(path), "mime_type": mime_type, "charset": charset,
                   "max_px": max_px}
        try:
            write_message(self._to_child, request)
        except BaseException:
            self.stop()
            raise
        self._deadline = time.monotonic() + self.timeout_seconds

    def finish(self) -> Extraction:
        """The answer to ``start``'s request; raise a PermanentError for a refused file."""
        finished = False
        try:
            answer = self._receive(self._deadline)
            finished = True
        finally:
            if not finished:
                # A deadline, a crash or the task's own time limit: the child is
                # mid-file and out of step, so it goes.
                self.stop()
        if answer.get("exiting"):
            self.stop()
        if "error" in answer:
            code, message = answer["error"]
            raise permanent_error(code, message)
        return answer["ok"]

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.stop()
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.extract.server",
             str(child_read), str(child_write), str(self.memory_mb)],
            pass_fds=(child_read, child_write),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(child_read)
        os.close(child_write)
        self._to_child, self._from_child = parent_write, parent_read
        try:
            self._receive(time.monotonic() + STARTUP_SECONDS)
        except Exception:
            self.stop()
            raise
        log.debug("sandbox started pid=%s", self._process.pid)

    def _receive(self, deadline: float) -> dict:
        header = self._read(HEADER.size, deadline)
        (length,) = HEADER.unpack(header)
        # The child has answered: the rest is a pipe copy, which may start after
        # the deadline when the caller was busy uploading meanwhile.
        body_deadline = max(deadline, time.monotonic() + ANSWER_GRACE_SECONDS)
        return pickle.loads(self._read(length, body_deadline))

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        while remaining:
            # An answer already waiting in the pipe counts, even past the deadline.
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self._from_child], [], [], left)[0]:
                raise ParseTimeout(
                    f"reading the file took longer than {self.timeout_seconds:g} s"
                )
            chunk = os.read(self._from_child, min(remaining, 1 << 20))
            if not chunk:
                raise self._crash_error()
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _crash_error(self) -> Exception:
        assert self._process is not None
        code = self._process.wait(timeout=5)
        log.warning("sandbox died pid=%s returncode=%s", self._process.pid, code)
        if code in (-9, 3):
            return DecompressionBomb("reading the file exceeded the memory limit")
        return Unreadable(f"the reader crashed (exit status {code})")

    def stop(self) -> None:
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                os.close(fd)
        self._to_child = self._from_child = -1
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None
