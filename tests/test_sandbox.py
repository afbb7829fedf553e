"""Readers run under a deadline and a memory cap; the sandbox survives both."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import DecompressionBomb, ParseTimeout
from pipeline.extract.sandbox import Sandbox
from tests.conftest import CORPUS

GOOD_PDF = CORPUS / "pdf" / "minimal-document.pdf"
SLOW_PDF = CORPUS / "hostile" / "slow_text_extraction.pdf"


@pytest.fixture
def huge_png(tmp_path: Path) -> Path:
    """144 megapixels: under Pillow's bomb limit, yet 430 MB once decoded."""
    path = tmp_path / "huge.png"
    Image.new("RGB", (12_000, 12_000), (200, 10, 10)).save(path)
    return path


def test_a_file_past_the_deadline_costs_one_timeout_and_the_next_file_works() -> None:
    sandbox = Sandbox(timeout_seconds=0.05, memory_mb=1536)
    try:
        with pytest.raises(ParseTimeout):
            sandbox.read(SLOW_PDF, "application/pdf", None, 400)

        sandbox.timeout_seconds = 60
        assert sandbox.read(GOOD_PDF, "application/pdf", None, 400).page_count == 1
    finally:
        sandbox.stop()


def test_a_file_past_the_memory_cap_is_a_bomb_and_the_next_file_works(huge_png: Path) -> None:
    sandbox = Sandbox(timeout_seconds=60, memory_mb=400)
    try:
        with pytest.raises(DecompressionBomb):
            sandbox.read(huge_png, "image/png", None, 400)

        assert sandbox.read(GOOD_PDF, "application/pdf", None, 400).page_count == 1
    finally:
        sandbox.stop()


def test_the_same_file_reads_fine_with_enough_memory(huge_png: Path) -> None:
    sandbox = Sandbox(timeout_seconds=120, memory_mb=1536)
    try:
        assert sandbox.read(huge_png, "image/png", None, 400).thumbnail
    finally:
        sandbox.stop()


def test_a_declared_gigapixel_canvas_is_refused_without_decoding() -> None:
    sandbox = Sandbox(timeout_seconds=10, memory_mb=400)
    try:
        with pytest.raises(DecompressionBomb):
            sandbox.read(CORPUS / "hostile" / "png_bomb_100000x100000.png", "image/png", None, 400)
    finally:
        sandbox.stop()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_reader_process_can_keep_freed_memory_for_the_next_page() -> None:
    # In a child of its own: the setting lasts for the whole process.
    check = ("from pipeline.extract.server import keep_freed_memory; "
             "raise SystemExit(0 if keep_freed_memory() else 1)")
    assert subprocess.run([sys.executable, "-c", check], check=False).returncode == 0
