"""Upload throughput and memory of ``sluice serve``, next to ``cp`` of the same file.

    python bench/api_upload.py [--size-mb 500] [--keep]

Starts ``sluice serve`` on the embedded defaults in a temporary folder, makes a
text file of the given size there, and uploads it with curl (which streams it
from disk, as a client would). Reports, for the upload, MB/s (wall time from
the first byte sent to the 202) and the API process's peak RSS growth (VmHWM
after the upload, with the peak reset just before it, minus VmRSS before); and
for ``cp`` of the same file (and ``cp`` plus ``sync`` of the copy, since the
upload makes its spool file durable before answering), MB/s and cp's peak RSS
(from /usr/bin/time). The file is in the page cache for all of them; runs are
interleaved and the median run of each is shown. ``make bench`` runs this as its
``upload`` section (``bench/upload.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_file(path: Path, size_mb: int) -> None:
    """Text (an accepted type), random so that nothing compresses or dedupes it."""
    with path.open("wb") as out:
        for _ in range(size_mb):
            line = os.urandom(MB // 2 - 1).hex().encode()
            out.write(line[: MB - 1] + b"\n")


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SLUICE_VAR_DIR": str(root / "var"), "SLUICE_API_TOKENS": TOKEN,
           "SLUICE_INBOX": str(root / "inbox"), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "cli.main", "db", "upgrade"], cwd=root, env=env,
                   check=True, capture_output=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "WARNING", "serve",
         "--port", str(port)], cwd=root, env=env, stdout=subprocess.DEVNULL,
        stderr=(root / "serve.log").open("wb"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError((root / "serve.log").read_text())


def measure_cp(source: Path, target: Path, sync: bool) -> dict[str, float]:
    """cp under /usr/bin/time, for its own peak RSS; optionally sync the copy too."""
    command = f'cp "{source}" "{target}"' + (f' && sync "{target}"' if sync else "")
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "sh", "-c", command],
                          check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    target.unlink()
    return {"seconds": seconds, "peak_rss_kib": int(done.stderr.strip().splitlines()[-1])}


def measure_upload(port: int, pid: int, source: Path) -> dict[str, float]:
    # Warm the app (first request imports and connects lazily), then reset the peak.
    httpx.get(f"http://127.0.0.1:{port}/api/documents/",
              headers={"Authorization": f"Bearer {TOKEN}"}).raise_for_status()
    before = kib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")

    api_cpu, children = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {TOKEN}",
         "-F", f"file=@{source}", f"http://127.0.0.1:{port}/api/documents/upload/"],
        check=True, capture_output=True)
    seconds = time.perf_counter() - started
    curl = resource.getrusage(resource.RUSAGE_CHILDREN)
    answer = json.loads(done.stdout)
    return {"seconds": seconds, "rss_before_kib": before,
            "peak_rss_kib": kib(pid, "VmHWM"), "status": answer["status"],
            "api_cpu": cpu_seconds(pid) - api_cpu,
            "curl_cpu": (curl.ru_utime + curl.ru_stime)
            - (children.ru_utime + children.ru_stime)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(size_mb: int, runs: int, root: Path | None = None,
            keep: bool = False) -> dict[str, Any]:
    """Make the file, start the API, time ``runs`` interleaved rounds; return the figures.

    ``root`` is the folder to work in (a temporary one when None); it is emptied
    afterwards unless ``keep``.
    """
    root = Path(tempfile.mkdtemp(prefix="sluice-bench-", dir=root))
    source = root / "big.txt"
    make_file(source, size_mb)
    size = source.stat().st_size / MB

    port = free_port()
    server = start_server(root, port)
    copies, synced, uploads = [], [], []
    try:
        # Interleaved, so that drift on a shared machine hits all three alike.
        for _ in range(runs):
            # Each starts with no dirty pages left over from the one before.
            os.sync()
            copies.append(measure_cp(source, root / "copy.txt", sync=False))
            os.sync()
            synced.append(measure_cp(source, root / "copy.txt", sync=True))
            os.sync()
            uploads.append(measure_upload(port, server.pid, source))
            # The spooled upload is not needed again: keep the disk from filling.
            for spooled in (root / "var").rglob("spool/*"):
                if spooled.is_file():
                    spooled.unlink()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not keep:
            shutil.rmtree(root)

    copy, copy_sync, upload = median(copies), median(synced), median(uploads)
    return {
        "size_mb": size,
        "upload_mb_per_s": size / upload["seconds"], "upload_seconds": upload["seconds"],
        "rss_before_mb": upload["rss_before_kib"] / 1024,
        "peak_rss_mb": upload["peak_rss_kib"] / 1024,
        "growth_mb": (upload["peak_rss_kib"] - upload["rss_before_kib"]) / 1024,
        "worst_growth_mb": max(run["peak_rss_kib"] - run["rss_before_kib"]
                               for run in uploads) / 1024,
        "status": upload["status"],
        "api_cpu_seconds": upload["api_cpu"], "curl_cpu_seconds": upload["curl_cpu"],
        "cp_mb_per_s": size / copy["seconds"], "cp_seconds": copy["seconds"],
        "cp_peak_rss_mb": copy["peak_rss_kib"] / 1024,
        "cp_sync_mb_per_s": size / copy_sync["seconds"],
        "cp_sync_seconds": copy_sync["seconds"],
        "runs": {"upload": [size / run["seconds"] for run in uploads],
                 "cp": [size / run["seconds"] for run in copies],
                 "cp_sync": [size / run["seconds"] for run in synced],
                 "growth_mb": [(run["peak_rss_kib"] - run["rss_before_kib"]) / 1024
                               for run in uploads]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3, help="runs of each; medians shown")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    found = measure(args.size_mb, args.runs, keep=args.keep)
    print(f"file: {found['size_mb']:.0f} MB")
    print(f"upload to sluice serve: {found['upload_mb_per_s']:.0f} MB/s "
          f"({found['upload_seconds']:.2f} s), API peak RSS growth {found['growth_mb']:.1f} MB "
          f"(RSS before {found['rss_before_mb']:.0f} MB, peak "
          f"{found['peak_rss_mb']:.0f} MB; largest growth of any run "
          f"{found['worst_growth_mb']:.1f} MB), answered {found['status']}; CPU: API "
          f"{found['api_cpu_seconds']:.2f} s, curl {found['curl_cpu_seconds']:.2f} s")
    print(f"cp: {found['cp_mb_per_s']:.0f} MB/s ({found['cp_seconds']:.2f} s), "
          f"peak RSS {found['cp_peak_rss_mb']:.1f} MB")
    print(f"cp + sync: {found['cp_sync_mb_per_s']:.0f} MB/s "
          f"({found['cp_sync_seconds']:.2f} s)")


def median(runs: list[dict]) -> dict:
    """The run with the median time (its other figures come with it)."""
    return sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]


if __name__ == "__main__":
    main()
