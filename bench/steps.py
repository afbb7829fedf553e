"""Section ``steps``: what each of Sluice's steps costs per file, beside its floor.

Each step is Sluice's own code called directly (no sandbox, no queue); its
reference is the cheapest known way to do the same job on this machine, measured
in the same run (PERFORMANCE.md lists them):

    hash       Sluice's one-read hash vs SHA-256 of the bytes already in memory
    detect     Sluice's detection vs libmagic on the first 2 KB
    text       PDFs: PDFium as Sluice calls it vs ``pdftotext`` (pypdf if absent);
               Sluice's side is timed inside a process set up as the sandbox's
               reader (``bench.textprobe``), pdftotext's from outside, so with
               its process start, which one more row takes off
    thumbnail  JPEG: vs a decode at 1/8 scale; PNG/TIFF: vs a full decode;
               PDF: vs ``pdftoppm`` when installed
    sandbox    reading through the sandbox process vs the same read in-process
    upload     Sluice's two PUTs vs two bare ``put_object`` calls, one client
    claim      the lease taken before a file is read (no reference)
    commit     Sluice's ``mark_stored`` vs one INSERT + COMMIT with psycopg
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import magic
import pypdfium2 as pdfium
from PIL import Image

from bench import floor
from bench.core import Context, Result, median, time_call
from bench.inputs import KINDS, KINDS_BY_NAME
from bench.pdfwriter import build_pdf
from bench.textprobe import TextProbe
from pipeline import documents, keys
from pipeline.detect import detect
from pipeline.documents import Actor
from pipeline.extract.image import extract_image
from pipeline.extract.pdf import render_first_page
from pipeline.extract.readers import read_file
from pipeline.ingest import hash_file
from pipeline.intake import Intake, receive_file
from pipeline.storage.s3 import hex_to_b64

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus"
NAME = "steps"
TITLE = "Per step, per file (Sluice's code called directly vs the floor)"
FILES_PER_KIND = 4
PAGES_20 = 20
TEXT_GOAL = 0.9  # Sluice's pages/s over pdftotext's, at least
THUMBNAIL_GOAL = 1.1  # a 24 MP thumbnail over a 1/8-scale decode, at most


class _Timer:
    """Collects medians: Sluice's and the reference's ms for one (kind, step)."""

    def __init__(self, repeat: int):
        self.repeat = repeat
        self.samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {}

    def add(self, kind: str, step: str, sluice: Callable[[], Any],
            reference: Callable[[], Any] | None) -> None:
        self.add_timed(kind, step, lambda: time_call(sluice, 1)[0], reference)

    def add_timed(self, kind: str, step: str, sluice_seconds: Callable[[], float],
                  reference: Callable[[], Any] | None) -> None:
        """Like ``add``, for a Sluice step that times itself: it returns its seconds."""
        ours, theirs = self.samples.setdefault((kind, step), ([], []))
        # Interleaved, so that drift on a shared machine hits both alike.
        for _ in range(self.repeat):
            ours.append(sluice_seconds())
            if reference is not None:
                theirs += time_call(reference, 1)


def run(ctx: Context) -> list[Result]:
    stack = ctx.stack()
    inprocess = floor.pipeline(ctx)
    timer = _Timer(max(ctx.runs, 3))
    references = _References(stack, ctx.work)
    probe = TextProbe(stack.settings.parser_memory_mb)
    try:
        for kind in KINDS:
            for path in ctx.inputs.files[kind.name][:FILES_PER_KIND]:
                _measure_file(timer, references, probe, stack, inprocess, kind.name, path)
        stack.reset()
        corpus = _corpus_text(references, probe, max(ctx.runs, 3))
    finally:
        probe.close()
    return _results(timer, references) + [corpus]


def _corpus_text(refs: _References, probe: TextProbe, repeat: int) -> Result:
    """PDF text over the real PDFs of tests/corpus, for comparison with the made-up one."""
    entries = json.loads((CORPUS / "manifest.json").read_text())
    pdfs = [(CORPUS / entry["path"], entry["pages"]) for entry in entries
            if entry.get("mime") == "application/pdf" and entry.get("kind") == "good"
            and entry.get("pages")]
    pages = sum(count for _, count in pdfs)
    ours = median(sum(probe.seconds(path) for path, _ in pdfs) for _ in range(repeat))
    theirs = median(sum(time_call(refs.text(path), 1)[0] for path, _ in pdfs)
                    for _ in range(repeat))
    return Result(
        NAME, "steps.corpus_pdf.text_pages_per_s",
        f"tests/corpus PDFs ({len(pdfs)} files, {pages} pages): text, pages/s",
        pages / ours, "pages/s", reference=pages / theirs,
        reference_label=refs.text_label + " (with its process start)", ratio=theirs / ours,
        note="no goal: shows how the 20-page figure compares on real-world files",
    )


def _measure_file(timer: _Timer, refs: _References, probe: TextProbe, stack: Any,
                  inprocess: Any, kind: str, path: Path) -> None:
    data = path.read_bytes()
    sha256, _size, head = hash_file(path)
    magic_handle = magic.Magic(mime=True)
    timer.add(kind, "hash", lambda: hash_file(path), lambda: hashlib.sha256(data).hexdigest())
    timer.add(kind, "detect", lambda: detect(path, head, path.name),
              lambda: magic_handle.from_buffer(head[:2048]))

    facts = inprocess.inspect(path)
    settings = stack.settings
    max_px = settings.thumbnail_max_px
    if facts.mime_type == "application/pdf":
        timer.add_timed(kind, "text", lambda: probe.seconds(path), refs.text(path))
        refs.measure_text_start(timer.repeat)
        timer.add(kind, "thumbnail", lambda: _pdf_thumbnail(path, max_px), refs.render(path))
    else:
        timer.add(kind, "thumbnail", lambda: extract_image(path, facts.mime_type, max_px),
                  lambda: _decode_floor(path))

    sandbox = stack.runtime.sandbox
    timer.add(kind, "sandbox",
              lambda: sandbox.read(path, facts.mime_type, facts.charset, max_px),
              lambda: read_file(path, facts.mime_type, facts.charset, max_px))

    extraction = inprocess.read(path, facts)
    document_id = uuid.uuid4()
    timer.add(kind, "upload",
              lambda: inprocess.upload(document_id, path, facts, extraction),
              lambda: refs.bare_puts(document_id, path, data, sha256, facts, extraction))

    _measure_commit(timer, stack, inprocess, kind, path, facts, extraction)


def _measure_commit(timer: _Timer, stack: Any, inprocess: Any, kind: str, path: Path,
                    facts: Any, extraction: Any) -> None:
    """Sluice's claim and commit of a real row, against a bare INSERT + COMMIT."""
    runtime, actor = stack.runtime, Actor.here("bench-task")
    stored, thumbnail = inprocess.upload(uuid.uuid4(), path, facts, extraction)
    text = extraction.text
    ours, theirs = timer.samples.setdefault((kind, "commit"), ([], []))
    claims, _ = timer.samples.setdefault((kind, "claim"), ([], []))
    for _ in range(timer.repeat):
        document = receive_file(runtime, path, Intake(source="cli", original_name=path.name),
                                Actor.here())
        claims += time_call(lambda d=document.id: _claim(runtime, d, actor), 1)
        values = {
            "file_size": facts.size, "sha256": facts.sha256, "mime_type": facts.mime_type,
            "file_name": keys.stored_file_name(document.id, facts.mime_type),
            "s3_bucket": runtime.store.bucket, "s3_key": stored.key,
            "thumbnail_key": thumbnail.key if thumbnail else None,
            "page_count": extraction.page_count, "encrypted": extraction.encrypted,
            "text_length": len(text) if text is not None else None,
        }
        ours += time_call(
            lambda d=document.id, v=values: _mark_stored(runtime, d, actor, v, text), 1)
        runtime.spool.remove(document.spool_ref)
        stack.reset()  # the same content may be stored once only
        theirs += time_call(lambda: inprocess.insert(uuid.uuid4(), path, facts, extraction,
                                                     stored, thumbnail), 1)
        stack.reset()


def _claim(runtime: Any, document_id: uuid.UUID, actor: Actor) -> None:
    with runtime.session() as session:
        assert documents.claim(session, document_id, actor, 600) is not None


def _mark_stored(runtime: Any, document_id: uuid.UUID, actor: Actor,
                 values: dict[str, Any], text: str | None) -> None:
    with runtime.session() as session:
        assert documents.mark_stored(session, document_id, actor, values, text)


def _pdf_thumbnail(path: Path, max_px: int) -> bytes:
    document = pdfium.PdfDocument(str(path))
    try:
        return render_first_page(document[0], max_px)
    finally:
        document.close()


def _decode_floor(path: Path) -> None:
    """The least decoding a thumbnail needs: 1/8 scale for a JPEG, else all of it."""
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft(image.mode, (image.width // 8, image.height // 8))
        image.load()


class _References:
    """The reference tools, and which of them this machine has."""

    def __init__(self, stack: Any, work: Path):
        self.pdftotext = shutil.which("pdftotext")
        self.pdftoppm = shutil.which("pdftoppm")
        self.client = stack.runtime.store.client
        self.bucket = stack.runtime.store.bucket
        # pdftotext's cost per file that is not text: starting its process, and
        # opening and writing out a blank one-page PDF.
        self.blank_pdf = work / "blank.pdf"
        self.blank_pdf.write_bytes(build_pdf([[]]))
        self.text_start_samples: list[float] = []

    @property
    def text_label(self) -> str:
        return "pdftotext" if self.pdftotext else "pypdf (pdftotext not installed)"

    def text(self, path: Path) -> Callable[[], Any]:
        if self.pdftotext:
            return lambda: subprocess.run([self.pdftotext, "-q", str(path), "-"],
                                          check=True, stdout=subprocess.DEVNULL)
        from pypdf import PdfReader

        return lambda: [page.extract_text() for page in PdfReader(str(path)).pages]

    def measure_text_start(self, repeat: int) -> None:
        if self.pdftotext:
            self.text_start_samples += time_call(self.text(self.blank_pdf), repeat)

    def render(self, path: Path) -> Callable[[], Any] | None:
        if not self.pdftoppm:
            return None
        return lambda: subprocess.run(
            [self.pdftoppm, "-q", "-f", "1", "-l", "1", "-scale-to", "400", "-jpeg",
             str(path)], check=True, stdout=subprocess.DEVNULL)

    def bare_puts(self, document_id: uuid.UUID, path: Path, data: bytes, sha256: str,
                  facts: Any, extraction: Any) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"bare/{document_id}", Body=data,
                               ChecksumSHA256=hex_to_b64(sha256),
                               ServerSideEncryption="AES256")
        if extraction.thumbnail:
            self.client.put_object(
                Bucket=self.bucket, Key=f"bare/{document_id}.jpg", Body=extraction.thumbnail,
                ChecksumSHA256=hex_to_b64(hashlib.sha256(extraction.thumbnail).hexdigest()),
                ServerSideEncryption="AES256")


REFERENCE_LABELS = {
    "hash": "SHA-256 in memory", "detect": "libmagic, 2 KB", "sandbox": "same read in-process",
    "upload": "2 bare put_object", "commit": "psycopg INSERT + COMMIT",
}


def _reference_label(refs: _References, kind: str, step: str) -> str | None:
    if step == "text":
        return refs.text_label
    if step == "thumbnail":
        if kind.startswith("pdf"):
            return "pdftoppm" if refs.pdftoppm else None
        return "decode at 1/8 scale" if kind.startswith("jpeg") else "full decode"
    return REFERENCE_LABELS.get(step)


def _results(timer: _Timer, refs: _References) -> list[Result]:
    results = []
    for (kind, step), (ours, theirs) in timer.samples.items():
        value = median(ours) * 1000
        reference = median(theirs) * 1000 if theirs else None
        ratio = value / reference if reference else None
        result = Result(
            NAME, f"steps.{kind}.{step}", f"{KINDS_BY_NAME[kind].label}: {step}", value, "ms",
            runs=[sample * 1000 for sample in ours], reference=reference,
            reference_label=_reference_label(refs, kind, step) if reference else None,
            ratio=ratio,
        )
        if kind == "jpeg_24mp" and step == "thumbnail" and ratio is not None:
            result.goal, result.met = f"≤ {THUMBNAIL_GOAL} × reference", ratio <= THUMBNAIL_GOAL
        results.append(result)
        if kind == "pdf_20p" and step == "text" and reference:
            results.append(_pages_per_second(value, reference, refs))
            if refs.text_start_samples:
                start_ms = median(refs.text_start_samples) * 1000
                results.append(_pages_per_second_without_start(value, reference, start_ms))
    return results


def _pages_per_second(ours_ms: float, reference_ms: float, refs: _References) -> Result:
    ours, theirs = PAGES_20 * 1000 / ours_ms, PAGES_20 * 1000 / reference_ms
    return Result(
        NAME, "steps.pdf_20p.text_pages_per_s", "20-page PDF: text, pages/s", ours, "pages/s",
        reference=theirs, reference_label=refs.text_label + " (with its process start)",
        ratio=ours / theirs, goal=f"≥ {TEXT_GOAL} × reference", met=ours / theirs >= TEXT_GOAL,
    )


def _pages_per_second_without_start(ours_ms: float, reference_ms: float,
                                    start_ms: float) -> Result:
    """The same figure with pdftotext's process start taken off; no goal."""
    ours, theirs = PAGES_20 * 1000 / ours_ms, PAGES_20 * 1000 / (reference_ms - start_ms)
    return Result(
        NAME, "steps.pdf_20p.text_pages_per_s_no_start",
        "20-page PDF: text, pages/s, pdftotext's start taken off", ours, "pages/s",
        reference=theirs, reference_label="pdftotext, less a blank one-page run",
        ratio=ours / theirs, detail={"pdftotext_start_ms": start_ms},
        note=f"no goal: pdftotext on a blank one-page PDF took {start_ms:.1f} ms "
             "(process start, open, output), taken off its time per file; Sluice's "
             "reader process is started once, not per file",
    )
