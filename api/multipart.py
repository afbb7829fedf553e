"""Reading a multipart upload as it arrives, each file straight into the spool.

FastAPI's ``UploadFile`` would first copy every file to a temporary file and
then leave it to us to copy again; here python-multipart's streaming parser
hands each piece of a file part to a spool ``IncomingFile``, which hashes and
writes it once. Form fields are small and kept in memory, within limits.

The parser's callbacks run inside ``parser.write``, on the event loop; they only
collect views of the received chunks, never copies. Batches of about
``FLUSH_BYTES`` go to the request's own writer thread, which hashes and writes
them while the event loop goes on parsing. The writer may fall at most
``BATCHES_IN_FLIGHT`` batches behind; then the event loop waits for it. So the
event loop never waits for the disk while the disk keeps up, and memory stays
at a few MB per upload whatever the file's size.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import unquote_to_bytes

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pipeline.errors import TooLarge
from pipeline.names import decode_name_bytes
from pipeline.spool import IncomingFile

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024
# Batches handed to the writer and not yet written: with FLUSH_BYTES, the memory
# an upload may hold (about 5 MB, beside the spool's 4 MB staging buffer for a
# large file) and how far the disk may lag behind the network.
BATCHES_IN_FLIGHT = 4
MAX_FILES = 100
MAX_FIELDS = 100
MAX_FIELD_BYTES = 64 * 1024
# Headers, boundaries and form fields beside the files.
FORM_OVERHEAD_BYTES = 1024 * 1024
# An upload that sends nothing for this long is abandoned, and its files with it.
IDLE_TIMEOUT_SECONDS = 60.0
FILE_FIELD = "file"


class MalformedUpload(Exception):
    """The body is not the multipart form it claims to be, or it ended too early."""


class FieldTooLarge(Exception):
    """A form field is larger than MAX_FIELD_BYTES, or there are too many parts."""

    def __init__(self, message: str, code: str = "field_too_large"):
        super().__init__(message)
        self.code = code


class UploadStalled(Exception):
    """The client stopped sending in the middle of the body."""


@dataclass
class FilePart:
    filename: str
    incoming: IncomingFile | None = None
    # Views of received chunks, not yet handed to the writer.
    pending: list[memoryview] = field(default_factory=list)
    pending_bytes: int = 0
    handed_over: bool = False
    ended: bool = False

    def take_pending(self) -> list[memoryview]:
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        return batch

    def write(self, batch: list[memoryview], open_incoming: Callable[[], IncomingFile]) -> None:
        """Write a batch (on the writer thread); opens the spool file on first use."""
        if self.incoming is None:
            self.incoming = open_incoming()
        if batch:
            self.incoming.writelines(batch)


@dataclass
class UploadForm:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        """The last value sent for ``name``, or None."""
        values = self.fields.get(name)
        return values[-1] if values else None

    def abort(self) -> None:
        for part in self.files:
            if part.incoming is not None:
                part.incoming.abort()


class SpoolWriter:
    """Runs one request's spool writes in order, on a thread of its own.

    ``submit`` returns as soon as the batch is queued, so hashing and writing
    overlap with receiving and parsing; it waits only while BATCHES_IN_FLIGHT
    batches are queued. The first error stops the writer; ``submit`` and
    ``close`` raise it.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(BATCHES_IN_FLIGHT)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="upload-writer", daemon=True)
        self._thread.start()

    async def submit(self, job: Callable[[], None]) -> None:
        self._raise_error()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            await anyio.to_thread.run_sync(self._jobs.put, job)

    async def close(self) -> None:
        """Wait until every batch is written; raise the writer's error, if any."""
        await anyio.to_thread.run_sync(self._stop)
        self._raise_error()

    def cancel(self) -> None:
        """Drop the batches not yet written and wait for the thread to end (blocking)."""
        self._cancelled = True
        self._stop()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _run(self) -> None:
        # After an error or a cancel, jobs are still taken (so that nobody waits
        # on a full queue) but not run.
        while (job := self._jobs.get()) is not None:
            if self._error is not None or self._cancelled:
                continue
            try:
                job()
            except BaseException as error:  # noqa: BLE001 - raised again on the event loop
                self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary; MalformedUpload when it is not multipart/form-data."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise ValueError(kind.decode("latin-1"))
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedUpload("the multipart Content-Type names no boundary")
    return boundary


class MultipartReader:
    """Parses one request body; ``read`` returns the form with every file spooled."""

    def __init__(self, boundary: bytes, open_incoming: Callable[[uuid.UUID], IncomingFile],
                 max_body_bytes: int):
        self._open_incoming = open_incoming
        self._max_body_bytes = max_body_bytes
        self._form = UploadForm()
        self._part_headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._file: FilePart | None = None
        self._finished = False
        self._writer: SpoolWriter | None = None
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        })

    async def read(self, stream: AsyncIterator[bytes]) -> UploadForm:
        """Consume the body; on any error every spooled file is removed, then it re-raises."""
        self._writer = SpoolWriter()
        try:
            await self._consume(stream)
            await self._writer.close()
        except BaseException:
            # Shielded: a cancelled request must still leave nothing behind.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._discard)
            raise
        return self._form

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        self._form.abort()

    async def _consume(self, stream: AsyncIterator[bytes]) -> None:
        received = 0
        while True:
            with anyio.fail_after(IDLE_TIMEOUT_SECONDS):
                chunk = await anext(stream, None)
            if chunk is None:
                break
            # The parts keep views of the chunk: it must not change afterwards.
            chunk = bytes(chunk) if not isinstance(chunk, bytes) else chunk
            received += len(chunk)
            if received > self._max_body_bytes:
                raise TooLarge(f"the request is larger than {self._max_body_bytes} bytes")
            try:
                self._parser.write(chunk)
            except FormParserError as error:
                raise MalformedUpload(f"the multipart body is malformed: {error}") from error
            await self._write_pending(final=False)

        self._parser.finalize()
        if not self._finished:
            raise MalformedUpload("the multipart body ended before its closing boundary")
        await self._write_pending(final=True)

    async def _write_pending(self, final: bool) -> None:
        for part in self._form.files:
            if not part.handed_over:
                # A new part's spool file is opened at once, while the rest arrives;
                # its first batch waits to be full, so that the spool can tell a
                # large file from a small one.
                part.handed_over = True
                await self._writer.submit(partial(part.write, [], self._new_incoming))
            full = part.pending_bytes >= FLUSH_BYTES
            if full or ((part.ended or final) and part.pending):
                batch = part.take_pending()
                await self._writer.submit(partial(part.write, batch, self._new_incoming))

    def _new_incoming(self) -> IncomingFile:
        return self._open_incoming(uuid.uuid4())

    # The parser's callbacks: collect bytes only, never touch the disk.

    def _on_part_begin(self) -> None:
        self._part_headers = {}
        self._field_name = None
        self._field_value = bytearray()
        self._file = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part_headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name = bytearray()
        self._header_value = bytearray()

    def _on_headers_finished(self) -> None:
        disposition = self._part_headers.get(b"content-disposition") or b""
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise MalformedUpload("a part of the form has no name")
        name = _decode(options[b"name"])
        extended = _extended_filename(disposition)
        # Any part named "file" is a file, with or without a filename.
        if name == FILE_FIELD or b"filename" in options or extended is not None:
            if len(self._form.files) >= MAX_FILES:
                raise FieldTooLarge(f"more than {MAX_FILES} files in one request",
                                    "too_many_parts")
            if name != FILE_FIELD:
                raise MalformedUpload(f"files go in fields named {FILE_FIELD!r}, not {name!r}")
            filename = extended if extended is not None else _decode(options.get(b"filename", b""))
            self._file = FilePart(filename=filename)
            self._form.files.append(self._file)
            return
        if sum(len(values) for values in self._form.fields.values()) >= MAX_FIELDS:
            raise FieldTooLarge(f"more than {MAX_FIELDS} form fields", "too_many_parts")
        self._field_name = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            if end > start:
                self._file.pending.append(memoryview(data)[start:end])
                self._file.pending_bytes += end - start
            return
        self._field_value += data[start:end]
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise FieldTooLarge(f"the form field {self._field_name!r} is over "
                                f"{MAX_FIELD_BYTES} bytes")

    def _on_part_end(self) -> None:
        if self._file is not None:
            self._file.ended = True
            return
        if self._field_name is not None:
            value = self._field_value.decode("utf-8", errors="replace")
            self._form.fields.setdefault(self._field_name, []).append(value)

    def _on_end(self) -> None:
        self._finished = True


def _decode(raw: bytes) -> str:
    # Browsers and curl send names as raw UTF-8 (cut-off UTF-8 stays UTF-8, with
    # U+FFFD); anything else is read as Latin-1.
    return decode_name_bytes(raw, fallback="latin-1")


# RFC 5987/2231: filename*=charset'language'percent-encoded. RFC 7578 asks clients
# not to send it, but some do (urllib3 before 2.0 did, for any non-ASCII name), and
# python-multipart drops it; RFC 6266 prefers it to a plain filename when both come.
_EXTENDED_FILENAME = re.compile(
    rb"""(?:^|;)\s*filename\*\s*=\s*"?([A-Za-z0-9!#$%&+^_`{}~-]*)'[^']*'([^";\s]*)"?""",
    re.IGNORECASE)


def _extended_filename(disposition: bytes) -> str | None:
    match = _EXTENDED_FILENAME.search(disposition)
    if match is None:
        return None
    charset = match.group(1).decode("ascii").lower() or "utf-8"
    raw = unquote_to_bytes(match.group(2))
    if charset in ("utf-8", "utf8"):
        return _decode(raw)
    try:
        return raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return _decode(raw)
