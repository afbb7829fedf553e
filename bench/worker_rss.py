"""Section ``worker_rss``: peak memory of a worker's processes over the whole corpus.

A fresh ``sluice worker -c 2`` takes every file of tests/corpus (hostile files
included). A sampler reads each process's ``VmHWM`` (the kernel's own peak RSS)
every few milliseconds, so a peak is exact for every process read at least once
before it ended. Reported per role: the Celery main process, a pool child (the
larger of the two) and a sandbox reader process (the largest seen).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from bench.core import Context, Result, descendants, median

NAME = "worker_rss"
TITLE = "Worker peak RSS over tests/corpus"
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus"
GOAL_MB = 250.0
SAMPLE_SECONDS = 0.01
ROLES = ("celery main", "pool child", "sandbox")


def _peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return -1


class _Sampler(threading.Thread):
    def __init__(self, worker_pid: int):
        super().__init__(daemon=True)
        self.worker_pid = worker_pid
        self.peaks: dict[int, tuple[str, int]] = {}
        self.done = threading.Event()

    def _role(self, pid: int) -> str:
        if pid == self.worker_pid:
            return "celery main"
        return "pool child" if _parent(pid) == self.worker_pid else "sandbox"

    def run(self) -> None:
        while not self.done.is_set():
            for pid in descendants(self.worker_pid):
                peak = _peak_kb(pid)
                role, seen = self.peaks.get(pid, (None, 0))
                if peak > seen:
                    self.peaks[pid] = (role or self._role(pid), peak)
            time.sleep(SAMPLE_SECONDS)

    def by_role(self) -> dict[str, float]:
        found = {role: 0.0 for role in ROLES}
        for role, peak_kb in self.peaks.values():
            found[role] = max(found[role], peak_kb / 1024)
        found["sandboxes started"] = sum(1 for role, _ in self.peaks.values()
                                         if role == "sandbox")
        return found


def _corpus_files() -> list[Path]:
    entries = json.loads((CORPUS / "manifest.json").read_text())
    return [CORPUS / entry["path"] for entry in entries]


def measure_once(ctx: Context) -> dict[str, float]:
    stack = ctx.stack()
    stack.stop_worker()
    stack.reset()
    stack.start_worker(concurrency=2)
    sampler = _Sampler(stack.worker.pid)
    sampler.start()
    try:
        handed = stack.intake(_corpus_files())
        stack.enqueue(handed)
        stack.wait_final(len(handed), timeout=300)
        time.sleep(SAMPLE_SECONDS * 5)
    finally:
        sampler.done.set()
        sampler.join()
        stack.stop_worker()
    return sampler.by_role()


def run(ctx: Context) -> list[Result]:
    runs = [measure_once(ctx) for _ in range(max(1, min(ctx.runs, 2)))]
    ctx.stack().reset()
    results = []
    for role in ROLES:
        values = [run[role] for run in runs]
        peak = median(values)
        results.append(Result(
            NAME, f"worker_rss.{role.replace(' ', '_')}", f"peak RSS: {role}", peak, "MB",
            runs=values, goal=f"≤ {GOAL_MB:g} MB", met=peak <= GOAL_MB,
            note=(f"{median(run['sandboxes started'] for run in runs):.0f} reader processes "
                  "per run (one per child, plus one after each memory-limit kill)"
                  if role == "sandbox" else None),
        ))
    return results
