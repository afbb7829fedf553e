"""The benchmark's input files, made deterministically from seeds.

Every file is unique by content (so none is stored as a duplicate of another),
and the same seeds give the same bytes on every run, so a folder made once can be
reused (``InputSet.ensure`` checks a marker and the expected counts).
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.pdfwriter import Picture, build_pdf

log = logging.getLogger(__name__)

# Bump when a generator changes, so that a reused folder is made again.
VERSION = 3

WORDS = (
    "patient referral invoice consent insurance prescription dosage clinic archive "
    "letter report summary diagnosis treatment follow appointment history record "
    "medication allergy laboratory result imaging radiology cardiology therapy "
    "payment account balance amount due date reference number signature approved "
    "department office address telephone contract agreement renewal policy claim "
    "procedure examination findings normal abnormal recommended review the of and "
    "to in for with on at by from as is was be are were this that which annual "
    "quarterly schedule physician nurse practitioner pharmacy hospital ward bed "
    "discharge admission emergency surgery anaesthesia recovery outpatient notes"
).split()


@dataclass(frozen=True)
class Kind:
    """One kind of input file: how to make it and how many a run uses."""

    name: str
    label: str
    suffix: str
    count: int
    make: Callable[[int], bytes]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _text_lines(rng: random.Random, count: int, first: str) -> list[str]:
    return [first] + [_sentence(rng, rng.randint(9, 13)) for _ in range(count - 1)]


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Photographic-ish RGB: smooth blobs over gradients, with fine grain."""
    rng = random.Random(seed)
    gradient = Image.linear_gradient("L").resize((width, height))
    mirrored = gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    channels = []
    for index in range(3):
        small = (max(width // 16, 2), max(height // 16, 2))
        blobs = Image.frombytes("L", small, rng.randbytes(small[0] * small[1]))
        blobs = blobs.resize((width, height), Image.Resampling.BICUBIC)
        base = gradient if index % 2 == 0 else mirrored
        channels.append(Image.blend(Image.blend(base, blobs, 0.5), grain, 0.08))
    return Image.merge("RGB", channels)


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


class _Photos:
    """A base photo per size, made once; each file gets a unique patch on it."""

    def __init__(self) -> None:
        self._bases: dict[tuple[int, int], Image.Image] = {}

    def jpeg(self, width: int, height: int, number: int) -> bytes:
        base = self._bases.get((width, height))
        if base is None:
            base = self._bases[(width, height)] = photo(width, height, seed=width)
        rng = random.Random(f"{width}x{height}-{number}")
        image = base.copy()
        patch = photo(256, 256, seed=rng.randint(0, 1 << 30))
        image.paste(patch, (rng.randint(0, width - 256), rng.randint(0, height - 256)))
        return _jpeg(image)


_photos = _Photos()


def small_pdf(number: int) -> bytes:
    """One page, about 200 KB: a photo on top and a few paragraphs of text."""
    rng = random.Random(f"pdf-small-{number}")
    picture_image = photo(920, 640, seed=rng.randint(0, 1 << 30))
    data = _jpeg(picture_image, quality=90)
    picture = Picture(data, *picture_image.size)
    lines = _text_lines(rng, 28, f"Bench letter {number}: referral and report")
    return build_pdf([lines], picture)


def long_pdf(number: int) -> bytes:
    """Twenty pages of text, 56 lines each."""
    rng = random.Random(f"pdf-20-{number}")
    pages = [_text_lines(rng, 56, f"Bench report {number}, page {page + 1} of 20")
             for page in range(20)]
    return build_pdf(pages)


def _scan_page(rng: random.Random, title: str) -> Image.Image:
    """An A4 page at 300 dpi: black text on slightly uneven white, with specks."""
    width, height = 2480, 3508
    page = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=38)
    y = 250
    draw.text((250, y), title, fill=10, font=font)
    while y < height - 350:
        y += 52
        draw.text((250, y), _sentence(rng, rng.randint(10, 14)), fill=20, font=font)
    specks = Image.frombytes("L", (width // 4, height // 4),
                             rng.randbytes(width * height // 16))
    specks = specks.point(lambda value: 0 if value > 252 else 255).resize((width, height))
    return Image.composite(page, specks, specks)


def scan_png(number: int) -> bytes:
    rng = random.Random(f"scan-{number}")
    out = io.BytesIO()
    _scan_page(rng, f"Scanned letter {number}").save(out, "PNG")
    return out.getvalue()


def multipage_tiff(number: int) -> bytes:
    """Three A4 300 dpi pages, 1-bit, CCITT G4: what office scanners write."""
    rng = random.Random(f"tiff-{number}")
    pages = [_scan_page(rng, f"Fax {number} page {page + 1}").point(
        lambda value: 255 if value > 128 else 0).convert("1") for page in range(3)]
    out = io.BytesIO()
    pages[0].save(out, "TIFF", compression="group4", save_all=True,
                  append_images=pages[1:], dpi=(300, 300))
    return out.getvalue()


KINDS = (
    Kind("pdf_small", "200 KB PDF", ".pdf", 120, small_pdf),
    Kind("jpeg_2mp", "2 MP JPEG", ".jpg", 72, lambda n: _photos.jpeg(1632, 1224, n)),
    Kind("jpeg_24mp", "24 MP JPEG", ".jpg", 24, lambda n: _photos.jpeg(6000, 4000, n)),
    Kind("pdf_20p", "20-page PDF", ".pdf", 40, long_pdf),
    Kind("scan_png", "A4 300 dpi scan (PNG)", ".png", 10, scan_png),
    Kind("tiff_3p", "3-page G4 TIFF", ".tif", 10, multipage_tiff),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass
class InputSet:
    """The generated files, by kind name."""

    root: Path
    files: dict[str, list[Path]]

    @classmethod
    def ensure(cls, root: Path, scale: float = 1.0) -> InputSet:
        """Make the files under ``root`` unless a complete set of this version is there."""
        counts = {kind.name: max(2, round(kind.count * scale)) for kind in KINDS}
        marker = root / "inputs.json"
        wanted = {"version": VERSION, "counts": counts}
        if not (marker.exists() and json.loads(marker.read_text()) == wanted):
            root.mkdir(parents=True, exist_ok=True)
            for kind in KINDS:
                _make_kind(root, kind, counts[kind.name])
            marker.write_text(json.dumps(wanted))
        return cls(root, {kind.name: [_path(root, kind, n) for n in range(counts[kind.name])]
                          for kind in KINDS})


def _path(root: Path, kind: Kind, number: int) -> Path:
    return root / kind.name / f"{kind.name}-{number:04d}{kind.suffix}"


def _make_kind(root: Path, kind: Kind, count: int) -> None:
    (root / kind.name).mkdir(parents=True, exist_ok=True)
    for number in range(count):
        path = _path(root, kind, number)
        if not path.exists():
            path.write_bytes(kind.make(number))
    log.info("inputs made kind=%s files=%d", kind.name, count)
