"""The sandbox process: reads untrusted files under a memory limit.

Started by ``sandbox.Sandbox`` as ``python -m pipeline.extract.server IN OUT MB``.
It answers one request at a time over two pipes (4-byte length + pickle; both
ends are Sluice's own code). A request that exhausts memory is answered with
``decompression_bomb`` and the process exits, so the next request gets a fresh one.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import resource
import struct
import sys
import warnings
from pathlib import Path

HEADER = struct.Struct("!I")

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# PDFium builds each page's text in buffers of a few hundred KB to a few MB and frees
# them with the page. glibc's defaults give such memory back to the kernel page after
# page (unmapping it, or trimming the heap's top), and the next page faults it in again:
# on a 20-page text PDF that was a third of the time. Below these sizes freed memory
# stays in the heap for the next page; larger blocks (a 24 MP image) still go back.
MMAP_THRESHOLD_BYTES = 8 << 20
TRIM_THRESHOLD_BYTES = 16 << 20


def read_message(fd: int) -> object | None:
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    body = _read_exactly(fd, length)
    return None if body is None else pickle.loads(body)


def write_message(fd: int, message: object) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def keep_freed_memory() -> bool:
    """Tune the C allocator to reuse freed memory; False where there is no glibc ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def _prepare_readers() -> None:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; the memory limit
    # covers that band, the warning itself is noise.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def serve(read_fd: int, write_fd: int) -> None:
    from pipeline.errors import PermanentError
    from pipeline.extract.readers import read_file

    # Imports are done: the parent's deadline for a file starts after this.
    write_message(write_fd, {"ready": os.getpid()})
    while (request := read_message(read_fd)) is not None:
        try:
            result = read_file(Path(request["path"]), request["mime_type"],
                               request.get("charset"), request["max_px"])
            write_message(write_fd, {"ok": result})
        except PermanentError as error:
            write_message(write_fd, {"error": (error.code, error.message)})
        except MemoryError:
            # The heap may be in pieces now: answer, then make way for a fresh process.
            write_message(write_fd, {"error": ("decompression_bomb",
                                               "reading the file exceeded the memory limit"),
                                     "exiting": True})
            sys.exit(3)
        except RecursionError:
            write_message(write_fd, {"error": ("corrupt", "structure nested too deeply")})
        except Exception as error:  # noqa: BLE001 - a reader bug must not kill the worker
            write_message(write_fd, {"error": ("corrupt", f"{type(error).__name__}: {error}")})


def prepare_process(megabytes: int) -> None:
    """Set up this process as a reader: readers imported, allocator tuned, memory capped."""
    _prepare_readers()
    keep_freed_memory()
    _limit_memory(megabytes)


def main() -> None:
    read_fd, write_fd, megabytes = (int(arg) for arg in sys.argv[1:4])
    prepare_process(megabytes)
    # Libraries that print must not corrupt the protocol: stdout goes to stderr.
    os.dup2(2, 1)
    serve(read_fd, write_fd)


if __name__ == "__main__":
    main()
