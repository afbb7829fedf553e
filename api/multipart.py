"""Reading a multipart upload as it arrives, each file straight into the spool.

FastAPI's ``UploadFile`` would first copy every file to a temporary file and
then leave it to us to copy again; here python-multipart's streaming parser
hands each piece of a file part to a spool ``IncomingFile``, which hashes and
writes it once. Form fields are small and kept in memory, within limits.

The parser's callbacks run inside ``parser.write``, on the event loop; they only
collect bytes. The disk writes happen after each write, batched to about
``FLUSH_BYTES`` and run in a worker thread, so the event loop never waits for
the disk and memory stays at a few MB per upload whatever the file's size.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pipeline.errors import TooLarge
from pipeline.names import decode_name_bytes
from pipeline.spool import IncomingFile

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024
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
    pending: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def flush(self, open_incoming: Callable[[], IncomingFile]) -> None:
        """Write what is pending (in a worker thread); opens the spool file on first use."""
        if self.incoming is None:
            self.incoming = open_incoming()
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            self.incoming.write(data)


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
        try:
            await self._consume(stream)
        except BaseException:
            await anyio.to_thread.run_sync(self._form.abort)
            raise
        return self._form

    async def _consume(self, stream: AsyncIterator[bytes]) -> None:
        received = 0
        while True:
            with anyio.fail_after(IDLE_TIMEOUT_SECONDS):
                chunk = await anext(stream, None)
            if chunk is None:
                break
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
            # A new part's spool file is opened at once, so that its first bytes
            # are on disk while the rest arrives.
            opening = part.incoming is None
            full = len(part.pending) >= FLUSH_BYTES
            if opening or full or ((part.ended or final) and part.pending):
                await anyio.to_thread.run_sync(part.flush, self._new_incoming)

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
        _, options = parse_options_header(self._part_headers.get(b"content-disposition"))
        if b"name" not in options:
            raise MalformedUpload("a part of the form has no name")
        name = _decode(options[b"name"])
        # Any part named "file" is a file, with or without a filename.
        if name == FILE_FIELD or b"filename" in options:
            if len(self._form.files) >= MAX_FILES:
                raise FieldTooLarge(f"more than {MAX_FILES} files in one request",
                                    "too_many_parts")
            if name != FILE_FIELD:
                raise MalformedUpload(f"files go in fields named {FILE_FIELD!r}, not {name!r}")
            self._file = FilePart(filename=_decode(options.get(b"filename", b"")))
            self._form.files.append(self._file)
            return
        if sum(len(values) for values in self._form.fields.values()) >= MAX_FIELDS:
            raise FieldTooLarge(f"more than {MAX_FIELDS} form fields", "too_many_parts")
        self._field_name = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.pending += data[start:end]
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
