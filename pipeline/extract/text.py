"""Searchable text of plain text, CSV, HTML and e-mail files."""

from __future__ import annotations

import codecs
import email
import email.policy
from html.parser import HTMLParser
from pathlib import Path

from pipeline.extract import Extraction
from pipeline.extract.textnorm import MAX_TEXT_CHARS, normalize_text, truncate

TEXT_TYPES = {"text/plain", "text/csv", "text/markdown", "text/html", "text/xml",
              "application/xml", "application/json", "message/rfc822"}

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))


def extract_text_file(path: Path, mime_type: str, charset: str | None) -> Extraction:
    with path.open("rb") as source:
        data = source.read(MAX_TEXT_CHARS * 2)
    notes: list[str] = []

    if mime_type == "message/rfc822":
        text = _email_text(data)
    else:
        text = decode_bytes(data, charset)
        if mime_type == "text/html":
            text = html_to_text(text)
    return Extraction(text=truncate(normalize_text(text), notes), notes=notes)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text whatever its encoding; never fails."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if charset and charset.startswith("utf-16"):
        return data.decode(charset, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Legacy 8-bit text is overwhelmingly Windows-1252, a superset of the
        # printable part of ISO-8859-1.
        return data.decode("cp1252", errors="replace")


def _email_text(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts = [f"{name}: {message[name]}" for name in ("From", "To", "Subject")
             if message[name]]
    for part in message.walk():
        if part.get_content_maintype() == "multipart" or part.is_attachment():
            continue
        if part.get_content_type() in ("text/plain", "text/html"):
            try:
                body = part.get_content()
            except (LookupError, ValueError):
                body = decode_bytes(part.get_payload(decode=True) or b"", None)
            if part.get_content_type() == "text/html":
                body = html_to_text(body)
            parts.append(body)
    return "\n\n".join(parts)


class _VisibleText(HTMLParser):
    SKIP = {"script", "style", "head", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0
        self._title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag in ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "td"):
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
        elif not self._skipping:
            self.chunks.append(data)

    def text(self) -> str:
        title = "".join(self._title).strip()
        body = "".join(self.chunks).strip()
        return f"{title}\n\n{body}" if title else body


def html_to_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return parser.text()
