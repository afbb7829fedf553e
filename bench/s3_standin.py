"""A stand-in for S3's ListObjectsV2 and HEAD Object, serving a million keys from files.

moto keeps every object in memory and slows as a bucket grows (PERFORMANCE.md),
so at a million keys it measures moto, not Sluice. This server answers the two
requests a reconciliation makes, in S3's XML and headers, from sorted key files
(one ``key<TAB>size`` per line, one file per prefix), without checking request
signatures. ``LATENCY_MS`` delays each listing page as a remote bucket would
(S3 answers a 1,000-key page in some tens of milliseconds); 0 measures Sluice's
own cost alone. Run: ``python -m bench.s3_standin PORT BUCKET LATENCY_MS FILE...``.
"""

from __future__ import annotations

import bisect
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LAST_MODIFIED = "2026-01-01T00:00:00.000Z"
LAST_MODIFIED_HTTP = "Thu, 01 Jan 2026 00:00:00 GMT"
NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


class Listing:
    """Every key of the bucket, sorted, with its size."""

    def __init__(self, files: list[Path]):
        keys, sizes = [], []
        for file in files:
            with file.open() as lines:
                for line in lines:
                    key, size = line.rstrip("\n").split("\t")
                    keys.append(key)
                    sizes.append(int(size))
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self.keys = [keys[i] for i in order]
        self.sizes = [sizes[i] for i in order]

    def size_of(self, key: str) -> int | None:
        index = bisect.bisect_left(self.keys, key)
        if index < len(self.keys) and self.keys[index] == key:
            return self.sizes[index]
        return None

    def page(self, prefix: str, start: int | None, limit: int) -> tuple[range, bool]:
        first = bisect.bisect_left(self.keys, prefix) if start is None else start
        last = bisect.bisect_left(self.keys, prefix + "\U0010ffff")
        end = min(first + limit, last)
        return range(first, end), end < last


def make_handler(bucket: str, listing: Listing,
                 latency_seconds: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            if url.path.strip("/") != bucket or query.get("list-type") != "2":
                self._answer(404, b"")
                return
            body = self._list(query).encode()
            time.sleep(latency_seconds)
            self._answer(200, body, {"Content-Type": "application/xml"})

        def do_HEAD(self) -> None:  # noqa: N802
            path = unquote(urlsplit(self.path).path).lstrip("/")
            key = path[len(bucket) + 1:]
            size = listing.size_of(key)
            if size is None:
                self._answer(404, b"", head=True)
                return
            headers = {"Content-Length": str(size), "Last-Modified": LAST_MODIFIED_HTTP,
                       "ETag": '"0"', "x-amz-server-side-encryption": "AES256"}
            name = key.rsplit("/", 1)[-1].split(".")[0]
            if key.startswith("documents/") and len(name) == 36:
                # The benchmark's rows hold the id's hex digits twice as SHA-256.
                headers["x-amz-meta-sha256"] = name.replace("-", "") * 2
            self._answer(200, b"", headers, head=True)

        def _list(self, query: dict[str, str]) -> str:
            prefix = query.get("prefix", "")
            token = query.get("continuation-token")
            limit = int(query.get("max-keys", "1000"))
            start = int(token) if token else None
            indexes, truncated = listing.page(prefix, start, limit)
            keys, sizes = listing.keys, listing.sizes
            parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n'
                     f'<ListBucketResult xmlns="{NAMESPACE}">'
                     f"<Name>{bucket}</Name><Prefix>{quote(prefix)}</Prefix>"
                     f"<KeyCount>{len(indexes)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
                     f"<EncodingType>url</EncodingType>"
                     f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
            if truncated:
                parts.append(f"<NextContinuationToken>{indexes.stop}"
                             "</NextContinuationToken>")
            parts.extend(
                f"<Contents><Key>{quote(keys[i])}</Key><LastModified>{LAST_MODIFIED}"
                f'</LastModified><ETag>"0"</ETag><Size>{sizes[i]}</Size>'
                f"<StorageClass>STANDARD</StorageClass></Contents>" for i in indexes)
            parts.append("</ListBucketResult>")
            return "".join(parts)

        def _answer(self, status: int, body: bytes,
                    headers: dict[str, str] | None = None, head: bool = False) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


def main() -> None:
    port, bucket, latency_ms, *files = sys.argv[1:]
    listing = Listing([Path(file) for file in files])
    handler = make_handler(bucket, listing, float(latency_ms) / 1000)
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    print(f"ready keys={len(listing.keys)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
