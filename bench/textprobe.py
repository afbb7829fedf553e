"""A process set up as the sandbox's reader is, timing Sluice's PDF text on request.

``bench.steps`` starts it once (``python -m bench.textprobe MEMORY_MB``) and writes
one PDF path per line; it answers each with the seconds Sluice's text of that file
took inside it: open, every page's text, close. So the text step runs under the
reader process's own settings (allocator, memory cap) without changing those of
the benchmark's process, and without the pipe round trip, which the ``sandbox``
step shows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pypdfium2 as pdfium

from pipeline.extract.pdf import text_of
from pipeline.extract.server import prepare_process


def pdf_text(path: Path) -> str:
    document = pdfium.PdfDocument(str(path))
    try:
        return text_of(document)
    finally:
        document.close()


class TextProbe:
    """The benchmark's end: one probe process, asked file by file."""

    def __init__(self, memory_mb: int):
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.textprobe", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def seconds(self, path: Path) -> float:
        """Seconds the probe spent on the text of ``path``."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(f"{path}\n")
        answer = self._process.stdout.readline()
        if not answer:
            raise RuntimeError(f"text probe died (exit status {self._process.poll()})")
        return float(answer)

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)


def main() -> None:
    prepare_process(int(sys.argv[1]))
    for line in sys.stdin:
        start = time.perf_counter()
        pdf_text(Path(line.rstrip("\n")))
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    main()
