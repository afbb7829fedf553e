"""Checks that need a request per object: the verified checksum, the encryption.

They run in ``--deep`` mode on every object, otherwise on a random sample. On
S3 a HEAD with ``ChecksumMode=ENABLED`` returns the SHA-256 the bucket verified
when the object was written in one part (a multipart object's checksum is a
checksum of parts, which cannot be compared with the content's); the encryption
and KMS key come with the same answer. On the local store the file is read and
hashed, which is a real verification; it keeps no encryption, so that check does
not apply there and the report says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import IngestError
from pipeline.reconcile.findings import (
    CHECKSUM_MISMATCH,
    DELETED_BUT_PRESENT,
    MISSING_OBJECT,
    ORIGINAL,
    SIZE_MISMATCH,
    UNENCRYPTED_OBJECT,
    Finding,
)
from pipeline.storage.s3 import MISSING_CODES, b64_to_hex

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024
LOCAL_META_DIR = ".sluice-meta"


@dataclass(frozen=True)
class Inspection:
    """An object to inspect and what its row says about it."""

    key: str
    role: str
    document_id: uuid.UUID
    sha256: str | None  # the row's, for an original; a thumbnail's is in its metadata


@dataclass(frozen=True)
class ObjectFacts:
    size: int
    verified_sha256: str | None  # hashed by the store itself (S3) or read now (local)
    recorded_sha256: str | None  # what Sluice wrote into the metadata at upload
    sse: str | None
    kms_key_id: str | None


@dataclass
class Outcome:
    """What inspecting one object showed; candidates still need confirming."""

    findings: list[Finding] = field(default_factory=list)
    candidates: list[Finding] = field(default_factory=list)
    checksum: str | None = None  # "verified", "mismatch", "unverifiable", "gone"
    error: str | None = None


@dataclass(frozen=True)
class Encryption:
    """What the settings ask every object to carry."""

    sse: str
    kms_key_id: str | None


class Inspector(Protocol):
    encrypts: bool

    def facts(self, key: str) -> ObjectFacts | None: ...


class S3Inspector:
    encrypts = True

    def __init__(self, client: Any, bucket: str):
        self._client = client
        self._bucket = bucket

    def facts(self, key: str) -> ObjectFacts | None:
        try:
            answer = self._client.head_object(Bucket=self._bucket, Key=key,
                                              ChecksumMode="ENABLED")
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code", "")) in MISSING_CODES:
                return None
            raise
        return ObjectFacts(
            size=answer["ContentLength"],
            verified_sha256=b64_to_hex(answer.get("ChecksumSHA256")),
            recorded_sha256=answer.get("Metadata", {}).get("sha256"),
            sse=answer.get("ServerSideEncryption"),
            kms_key_id=answer.get("SSEKMSKeyId"),
        )


class LocalInspector:
    encrypts = False

    def __init__(self, root: Path):
        self._root = root

    def facts(self, key: str) -> ObjectFacts | None:
        path = self._root / key
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("rb") as content:
                while chunk := content.read(HASH_CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
        except (FileNotFoundError, IsADirectoryError):
            return None
        return ObjectFacts(size, digest.hexdigest(), self._recorded(key), None, None)

    def _recorded(self, key: str) -> str | None:
        try:
            sidecar = self._root / LOCAL_META_DIR / f"{key}.json"
            record = json.loads(sidecar.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record.get("sha256")


def make_inspector(store: Any) -> Inspector:
    client = getattr(store, "client", None)
    if client is not None:
        return S3Inspector(client, store.bucket)
    return LocalInspector(store.root)


def inspect_object(inspector: Inspector, item: Inspection,
                   encryption: Encryption) -> Outcome:
    """HEAD (or read) one object and compare it with its row and the settings."""
    try:
        facts = inspector.facts(item.key)
    except (ClientError, BotoCoreError, OSError) as error:
        log.warning("inspection failed s3_key=%s error=%s", item.key,
                    type(error).__name__)
        return Outcome(error=type(error).__name__)
    if facts is None:
        # Deleted since it was listed; the next run judges it.
        return Outcome(checksum="gone")

    outcome = Outcome()
    outcome.checksum = _check_checksum(item, facts, outcome.findings)
    if inspector.encrypts:
        _check_encryption(item, facts, encryption, outcome.findings)
    return outcome


def _check_checksum(item: Inspection, facts: ObjectFacts,
                    findings: list[Finding]) -> str:
    expected = item.sha256 if item.role == ORIGINAL else facts.recorded_sha256
    if expected is None:
        return "unverifiable"
    if facts.verified_sha256 is not None:
        found, evidence = facts.verified_sha256, "store"
    elif item.role == ORIGINAL and facts.recorded_sha256 is not None:
        # The bucket keeps no SHA-256 of its own for this object (a multipart
        # upload, or one written by something else); what the metadata says can
        # still disagree with the row.
        found, evidence = facts.recorded_sha256, "metadata"
        if found == expected:
            return "unverifiable"
    else:
        return "unverifiable"

    if found == expected:
        return "verified"
    findings.append(Finding(CHECKSUM_MISMATCH, item.document_id, item.key, item.role,
                            {"expected_sha256": expected, "sha256": found,
                             "evidence": evidence, "size": facts.size}))
    return "mismatch"


def _check_encryption(item: Inspection, facts: ObjectFacts, encryption: Encryption,
                      findings: list[Finding]) -> None:
    problem = encryption_problem(facts.sse, facts.kms_key_id, encryption)
    if problem is None:
        return
    findings.append(Finding(UNENCRYPTED_OBJECT, item.document_id, item.key, item.role,
                            {"problem": problem, "expected_sse": encryption.sse,
                             "expected_kms_key_id": encryption.kms_key_id,
                             "sse": facts.sse, "kms_key_id": facts.kms_key_id}))


def encryption_problem(sse: str | None, kms_key_id: str | None,
                       expected: Encryption) -> str | None:
    """None if the object is encrypted as the settings ask, else what is wrong."""
    if not sse:
        return "no server-side encryption"
    if expected.sse != "aws:kms":
        # AES256 is the floor; an object under a KMS key is at least as safe.
        return None
    if not sse.startswith("aws:kms"):
        return f"encrypted with {sse}, not with the KMS key"
    if not _same_kms_key(kms_key_id, expected.kms_key_id):
        return "encrypted with another KMS key"
    return None


def _same_kms_key(found: str | None, expected: str | None) -> bool:
    """S3 answers with the key's ARN; settings may hold an ARN, a key id or an alias."""
    if expected is None:
        return True
    if found is None:
        return False
    if expected.startswith("alias/") or ":alias/" in expected:
        # An alias cannot be compared with a key ARN without asking KMS.
        return True
    return found == expected or found.endswith(f":key/{expected}")


def check_out_of_layout(store: Any, key: str, role: str, document_id: uuid.UUID,
                        size: int | None, is_active: bool) -> Outcome:
    """A key that does not sort where its id does: asked for directly."""
    try:
        info = store.head(key)
    except IngestError as error:
        return Outcome(error=str(error))
    outcome = Outcome()
    if info is None:
        if is_active:
            outcome.candidates.append(Finding(MISSING_OBJECT, document_id, key, role,
                                              {"expected_size": size,
                                               "out_of_layout": True}))
        return outcome
    if not is_active:
        outcome.candidates.append(Finding(DELETED_BUT_PRESENT, document_id, key, role,
                                          {"size": info.size, "out_of_layout": True}))
    elif size is not None and info.size != size:
        outcome.findings.append(Finding(SIZE_MISMATCH, document_id, key, role,
                                        {"expected_size": size, "size": info.size,
                                         "out_of_layout": True}))
    return outcome
