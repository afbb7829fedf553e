"""Settings come from SLUICE_* variables once, typed, with embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings


def test_embedded_defaults_need_no_server(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path)

    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.storage.scheme == "file"
    assert settings.spool == tmp_path.resolve() / "spool"
    assert settings.sse == "AES256"


def test_lists_are_read_from_comma_separated_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_API_TOKENS", "alpha, beta,,")
    monkeypatch.setenv("SLUICE_ALLOWED_TYPES", "application/pdf,image/*")

    settings = Settings(_env_file=None)

    assert settings.api_tokens == ("alpha", "beta")
    assert settings.allowed_types == ("application/pdf", "image/*")


def test_s3_storage_url_gives_bucket_and_prefix() -> None:
    settings = Settings(_env_file=None, storage_url="s3://clinic-docs/sluice/prod")

    assert (settings.storage.bucket, settings.storage.prefix) == ("clinic-docs", "sluice/prod/")


def test_settings_cannot_change_once_read() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.inbox = Path("/elsewhere")  # type: ignore[misc]


def test_kms_without_a_key_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, sse="aws:kms")
