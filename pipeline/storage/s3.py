"""The S3 bucket (AWS or any S3-compatible server such as MinIO or moto)."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import TransientError
from pipeline.settings import Settings
from pipeline.storage.base import ObjectInfo, StoredObject
from pipeline.storage.disposition import attachment

log = logging.getLogger(__name__)

MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


def b64_to_hex(value: str | None) -> str | None:
    # A multipart object's checksum is a checksum of checksums ("…-N"): not the
    # content's SHA-256, so it is not reported as one.
    if not value or "-" in value:
        return None
    try:
        return base64.b64decode(value).hex()
    except (binascii.Error, ValueError):
        return None


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


class S3Store:
    """One boto3 client per process, shared by every call (a client per call is 5x slower)."""

    encrypts = True

    def __init__(self, settings: Settings):
        location = settings.storage
        self.bucket = location.bucket
        self.prefix = location.prefix
        self._sse = settings.sse
        self._kms_key_id = settings.sse_kms_key_id
        self._multipart_threshold = settings.multipart_threshold_mb * 1024 * 1024
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            config=Config(
                signature_version="s3v4",
                # Sluice supplies the SHA-256 itself; letting botocore add a CRC
                # to every request would hash each file a second time.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                # The body's SHA-256 already travels in the signed
                # x-amz-checksum-sha256 header and the server checks it; signing
                # the body too would hash each file once more on http endpoints
                # (botocore skips it on https when a checksum header is present).
                s3={"payload_signing_enabled": False},
                retries={"mode": "standard", "max_attempts": 4},
                max_pool_connections=16,
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        self.region = self._client.meta.region_name
        self._transfer = TransferConfig(
            multipart_threshold=self._multipart_threshold,
            multipart_chunksize=self._multipart_threshold,
            max_concurrency=4,
        )

    def _encryption_args(self) -> dict[str, str]:
        args = {"ServerSideEncryption": self._sse}
        if self._sse == "aws:kms" and self._kms_key_id:
            args["SSEKMSKeyId"] = self._kms_key_id
        return args

    def put_file(
        self, key: str, path: Path, *, size: int, sha256: str,
        content_type: str, metadata: dict[str, str],
    ) -> StoredObject:
        if size >= self._multipart_threshold:
            return self._put_multipart(key, path, size, sha256, content_type, metadata)
        with path.open("rb") as body:
            return self._put_single(key, body, size, sha256, content_type, metadata)

    def put_bytes(
        self, key: str, data: bytes, *, sha256: str, content_type: str,
        metadata: dict[str, str],
    ) -> StoredObject:
        return self._put_single(key, data, len(data), sha256, content_type, metadata)

    def _put_single(
        self, key: str, body: Any, size: int, sha256: str,
        content_type: str, metadata: dict[str, str],
    ) -> StoredObject:
        # The server recomputes ChecksumSHA256 and refuses the PUT (BadDigest) when
        # the bytes differ, so a 200 answer is itself the verification. Naming the
        # algorithm too makes every S3-compatible server keep the checksum (moto
        # ignores a bare value), so reconciliation can ask for it later.
        with _translate_errors("put", key):
            answer = self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentLength=size,
                ContentType=content_type, ChecksumAlgorithm="SHA256",
                ChecksumSHA256=hex_to_b64(sha256),
                Metadata={**metadata, "sha256": sha256}, **self._encryption_args(),
            )
        returned = b64_to_hex(answer.get("ChecksumSHA256"))
        if returned is not None and returned != sha256:
            raise TransientError(f"bucket stored {key} with another checksum")
        return StoredObject(key, size, sha256, answer.get("ServerSideEncryption"))

    def _put_multipart(
        self, key: str, path: Path, size: int, sha256: str,
        content_type: str, metadata: dict[str, str],
    ) -> StoredObject:
        # Each part carries a SHA-256 the server checks; the whole object is then
        # verified by size and by the content hash kept in its metadata.
        extra = {
            "ContentType": content_type, "ChecksumAlgorithm": "SHA256",
            "Metadata": {**metadata, "sha256": sha256}, **self._encryption_args(),
        }
        with _translate_errors("multipart put", key):
            self._client.upload_file(
                str(path), self.bucket, key, ExtraArgs=extra, Config=self._transfer
            )
        info = self.head(key)
        if info is None or info.size != size or info.metadata.get("sha256") != sha256:
            raise TransientError(f"bucket object {key} does not match after upload")
        return StoredObject(key, size, sha256, info.sse)

    def head(self, key: str, *, with_checksum: bool = False) -> ObjectInfo | None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if with_checksum:
            kwargs["ChecksumMode"] = "ENABLED"
        try:
            with _translate_errors("head", key):
                answer = self._client.head_object(**kwargs)
        except _Missing:
            return None
        metadata = answer.get("Metadata", {})
        return ObjectInfo(
            key=key,
            size=answer["ContentLength"],
            last_modified=answer.get("LastModified"),
            sha256=b64_to_hex(answer.get("ChecksumSHA256")) or metadata.get("sha256"),
            sse=answer.get("ServerSideEncryption"),
            kms_key_id=answer.get("SSEKMSKeyId"),
            metadata=metadata,
            content_type=answer.get("ContentType"),
        )

    def reencrypt(self, key: str) -> ObjectInfo:
        before = self.head(key, with_checksum=True)
        if before is None:
            raise KeyError(key)
        # A copy onto itself is the only way S3 changes an object's encryption. The
        # managed copy switches to a multipart copy past the threshold (a single
        # CopyObject stops at 5 GB), which does not carry metadata over by itself,
        # so metadata and content type are given explicitly, unchanged.
        extra = {
            "MetadataDirective": "REPLACE", "Metadata": before.metadata,
            "ContentType": before.content_type or "application/octet-stream",
            "ChecksumAlgorithm": "SHA256", **self._encryption_args(),
        }
        with _translate_errors("re-encrypt", key):
            self._client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, key,
                              ExtraArgs=extra, Config=self._transfer)
        after = self.head(key, with_checksum=True)
        if after is None or after.size != before.size or after.sha256 != before.sha256:
            raise TransientError(f"bucket object {key} changed while it was re-encrypted")
        return after

    def delete(self, key: str) -> None:
        with _translate_errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        with _translate_errors("list", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        key=item["Key"], size=item["Size"],
                        last_modified=item.get("LastModified"),
                    )

    def presign_get(
        self, key: str, *, expires_in: int, filename: str, content_type: str
    ) -> str:
        return self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket, "Key": key,
                "ResponseContentDisposition": attachment(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )

    def check_access(self) -> bool:
        try:
            with _translate_errors("head bucket", self.bucket):
                self._client.head_bucket(Bucket=self.bucket)
        except (TransientError, _Missing):
            return False
        return True

    @property
    def client(self) -> Any:
        """The shared boto3 client, for the few callers that need a raw call."""
        return self._client


class _Missing(Exception):
    """The key is not in the bucket."""


@contextmanager
def _translate_errors(operation: str, key: str) -> Iterator[None]:
    """Every bucket failure is transient for the document: the file is not at fault.

    Outages, throttling and even a wrong credential are fixed outside Sluice; the
    document keeps its place and is retried, never failed.
    """
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:
            raise _Missing(key) from error
        log.warning("bucket %s failed key=%s code=%s", operation, key, code)
        raise TransientError(f"bucket {operation} failed for {key}: {code}") from error
    except BotoCoreError as error:
        log.warning("bucket %s failed key=%s error=%s", operation, key, type(error).__name__)
        raise TransientError(f"bucket {operation} failed for {key}: {error}") from error
