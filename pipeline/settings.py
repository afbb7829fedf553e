"""Sluice's settings: one typed, frozen object read once from ``SLUICE_*`` variables.

Every part (Celery app, watcher, API, CLI) receives a ``Settings`` instance; nothing
else reads the environment. The defaults run on one machine with no server at all:
a SQLite file, a SQLite-backed Celery broker and a local object folder under
``./var``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.secretfile import read_or_create_secret

SECRET_KEY_FILE = "secret_key"

# The origin API's categories; clinics may replace them with SLUICE_CATEGORIES.
DEFAULT_CATEGORIES = (
    "medical", "prescription", "referral", "xray", "invoice",
    "quote", "consent", "insurance", "other",
)

# What a document pipeline of a clinic or an office is asked to keep. Executables,
# disk images and unknown binaries (application/octet-stream) are refused.
DEFAULT_ALLOWED_TYPES = (
    "application/pdf",
    "image/*",
    "text/plain", "text/csv", "text/html", "text/rtf", "text/markdown", "text/xml",
    "application/rtf", "application/xml", "application/json",
    "message/rfc822",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
    "application/zip", "application/gzip", "application/x-tar",
    "application/x-bzip2", "application/x-xz", "application/x-7z-compressed",
)

CommaList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """All of Sluice's configuration. Build it once with ``Settings()``."""

    model_config = SettingsConfigDict(
        env_prefix="SLUICE_", env_file=".env", extra="ignore", frozen=True
    )

    var_dir: Path = Path("./var")
    database_url: str = ""
    broker_url: str = ""
    # Several Sluice installations may share one Redis; each needs its own queue.
    queue_name: str = "sluice"
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    sse: Literal["AES256", "aws:kms"] = "AES256"
    sse_kms_key_id: str | None = None

    inbox: Path = Path("./inbox")
    spool: Path | None = None
    quarantine: Path | None = None
    api_tokens: CommaList = ()

    allowed_types: CommaList = DEFAULT_ALLOWED_TYPES
    categories: CommaList = DEFAULT_CATEGORIES
    max_file_size: int = Field(default=2 * 1024**3, gt=0)

    # Scanners write in bursts with pauses; 2 s of no change in size and mtime
    # feels immediate. A file still open for writing is not taken even then
    # (watchers/writers.py), except where the kernel cannot tell (network mounts):
    # there this interval must outlast the scanner's longest pause.
    watch_settle_seconds: float = Field(default=2.0, ge=0)
    # A zero-length file is a scanner that has not started writing yet.
    watch_empty_settle_seconds: float = Field(default=300.0, ge=0)
    watch_rescan_seconds: float = Field(default=60.0, gt=0)
    watch_polling: Literal["auto", "always", "never"] = "auto"
    watch_poll_interval_seconds: float = Field(default=2.0, gt=0)

    parser_timeout_seconds: float = Field(default=60.0, gt=0)
    parser_memory_mb: int = Field(default=1536, ge=256)
    thumbnail_max_px: int = Field(default=400, ge=32, le=2000)

    task_soft_time_limit_seconds: int = Field(default=240, gt=0)
    task_time_limit_seconds: int = Field(default=300, gt=0)
    task_max_retries: int = Field(default=10, ge=0)
    worker_concurrency: int = Field(default=2, ge=1)
    worker_max_memory_mb: int = Field(default=400, ge=64)

    stuck_after_seconds: int = Field(default=900, gt=0)
    sweep_interval_seconds: int = Field(default=60, gt=0)

    multipart_threshold_mb: int = Field(default=16, ge=5)
    presign_expiry_seconds: int = Field(default=3600, gt=0)
    presign_max_expiry_seconds: int = Field(default=7 * 24 * 3600, gt=0)

    # Testing only: named points where a process kills itself (pipeline/failpoints.py).
    failpoints: CommaList = ()

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Signs the local store's download links; kept in var_dir/secret_key when unset.
    secret_key: str | None = None
    # Where clients reach the API (the local store's download links point here).
    public_url: str = ""

    # Batch migration (``sluice migrate``). Documents of a run that are not final
    # yet; each holds at most one spooled file, so this bounds queue and spool.
    migrate_max_in_flight: int = Field(default=200, ge=1)
    # Bytes any one archive (with the archives inside it) may expand to.
    migrate_max_expanded_bytes: int = Field(default=64 * 1024**3, gt=0)
    # Expansion ratio (expanded / compressed) beyond which an entry is a
    # compression bomb. Office files rarely pass 20:1; bombs reach 1000:1 and more;
    # but real scans do too: a blank A4 page as a 300 dpi BMP is 8.7 MB from 9.5 KB.
    # So an entry is judged by its ratio only once it expands past this floor:
    # 64 MiB holds an uncompressed A4 page in colour at 300 dpi (26 MB), in grey
    # at 600 dpi (35 MB) or an A3 colour page at 300 dpi (52 MB), and lets a bomb
    # entry write no more than 64 MiB before it is stopped. Every entry, whatever
    # its size, still spends the expansion budget above.
    migrate_max_ratio: float = Field(default=100.0, gt=1)
    migrate_ratio_after_bytes: int = Field(default=64 * 1024**2, ge=0)
    # Archives inside archives: the source archive is depth 1.
    migrate_max_depth: int = Field(default=5, ge=1)

    # Reconciliation of the database against the bucket (pipeline/reconcile).
    # Celery beat's crontab, in UTC: minute hour day-of-month month day-of-week.
    reconcile_schedule: str = "30 2 * * *"
    # An object younger than this may belong to an upload still in flight; longer
    # than the longest task (hard limit 300 s plus its lease) with room to spare.
    reconcile_orphan_grace_seconds: int = Field(default=3600, ge=0)
    # None: the sweep's SLUICE_STUCK_AFTER_SECONDS.
    reconcile_stuck_after_seconds: int | None = Field(default=None, gt=0)
    # Objects HEADed per run for encryption and checksum checks (0: none).
    reconcile_sample_size: int = Field(default=100, ge=0)
    # Concurrent HEAD requests, all over the process's one S3 client.
    reconcile_concurrency: int = Field(default=8, ge=1, le=64)
    # Repairs the scheduled run applies; empty: it only reports.
    reconcile_repairs: CommaList = ()
    reconcile_time_limit_seconds: int = Field(default=6 * 3600, gt=0)
    reports_dir: Path | None = None
    # Set (e.g. "reports/") to also keep each report in the bucket, under the
    # storage prefix; empty keeps them on disk and in the database only.
    reports_prefix: str = ""

    @field_validator("api_tokens", "allowed_types", "categories", "failpoints",
                     "reconcile_repairs", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        # Frozen models refuse attribute assignment; the defaults depend on var_dir,
        # so they are filled in once here and never changed afterwards.
        var = self.var_dir.resolve()
        defaults = {
            "database_url": f"sqlite:///{var / 'sluice.sqlite'}",
            "broker_url": f"sqla+sqlite:///{var / 'broker.sqlite'}",
            "storage_url": f"file://{var / 'objects'}",
        }
        for name, default in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        if self.spool is None:
            object.__setattr__(self, "spool", var / "spool")
        if self.quarantine is None:
            object.__setattr__(self, "quarantine", var / "quarantine")
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.api_host}:{self.api_port}")
        if self.reports_dir is None:
            object.__setattr__(self, "reports_dir", var / "reports")
        if self.sse == "aws:kms" and not self.sse_kms_key_id:
            raise ValueError("SLUICE_SSE=aws:kms needs SLUICE_SSE_KMS_KEY_ID")
        if self.task_time_limit_seconds <= self.task_soft_time_limit_seconds:
            raise ValueError("the task hard time limit must exceed the soft one")
        _check_reconcile_settings(self)
        return self

    @cached_property
    def storage(self) -> StorageLocation:
        return StorageLocation.parse(self.storage_url)

    @cached_property
    def signing_key(self) -> bytes:
        """SLUICE_SECRET_KEY, or a key made once and kept in ``var_dir/secret_key``.

        Read lazily, so that processes which never sign anything (workers, the
        watcher) never create the file.
        """
        if self.secret_key:
            return self.secret_key.encode()
        return read_or_create_secret(self.var_dir / SECRET_KEY_FILE).encode()

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @property
    def lease_seconds(self) -> int:
        """How long a worker owns a document it is processing.

        Longer than the task's hard limit, so a live worker never loses its lease.
        """
        return self.task_time_limit_seconds + 60


RECONCILE_REPAIRS = ("stuck", "deleted_but_present", "missing_object", "orphan_object",
                     "unencrypted_object")
CRONTAB_FIELDS = 5


def _check_reconcile_settings(settings: Settings) -> None:
    unknown = set(settings.reconcile_repairs) - {"all", *RECONCILE_REPAIRS}
    if unknown:
        raise ValueError(f"SLUICE_RECONCILE_REPAIRS: unknown repairs "
                         f"{sorted(unknown)}; choose from all, "
                         f"{', '.join(RECONCILE_REPAIRS)}")
    if len(settings.reconcile_schedule.split()) != CRONTAB_FIELDS:
        raise ValueError("SLUICE_RECONCILE_SCHEDULE must be a crontab of five fields, "
                         f"e.g. '30 2 * * *', not {settings.reconcile_schedule!r}")
    prefix = settings.reports_prefix.strip("/")
    if prefix and prefix.split("/")[0] in ("documents", "thumbnails"):
        raise ValueError("SLUICE_REPORTS_PREFIX must lie outside documents/ "
                         "and thumbnails/")


class StorageLocation:
    """Where objects go: ``s3://BUCKET[/PREFIX]`` or ``file:///PATH``."""

    def __init__(self, scheme: str, bucket: str, prefix: str, path: Path | None):
        self.scheme = scheme
        self.bucket = bucket
        self.prefix = prefix
        self.path = path

    @classmethod
    def parse(cls, url: str) -> StorageLocation:
        parsed = urlparse(url)
        prefix = parsed.path.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"storage URL needs a bucket: {url!r}")
            return cls("s3", parsed.netloc, prefix, None)
        if parsed.scheme == "file":
            path = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
            return cls("file", path.name or "objects", "", path)
        raise ValueError(f"storage URL must start with s3:// or file://: {url!r}")
