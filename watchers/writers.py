"""Asking the kernel whether a file in the inbox is still open for writing.

Why: a settled size and mtime only say that nobody wrote lately. A scanner that keeps
its output open while it scans the next page can pause longer than any settle
interval; a file claimed then is stored half-written, and the writer's later bytes go
into a file nobody will read again. On Linux a read lease (``fcntl(F_SETLEASE,
F_RDLCK)``) is refused with EAGAIN while any process has the file open for writing,
which is exactly the question; it costs one open and two fcntl calls per file.

The lease is held while the file is claimed: a writer that opens the file meanwhile
waits in ``open`` until the lease is released, and the lease shows that it is waiting
(``writer_waiting``), so the claim can put the file back for it.

Where leases are unavailable (NFS, SMB and FUSE mounts answer EINVAL; a watcher that
neither owns the file nor has CAP_LEASE gets EACCES or EPERM; other systems have no
leases) the kernel cannot tell, and the settle interval alone decides.
"""

from __future__ import annotations

import enum
import errno
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None  # type: ignore[assignment]

_LEASES = fcntl is not None and hasattr(fcntl, "F_SETLEASE") and hasattr(fcntl, "F_SETSIG")
# A writer opening the file breaks our lease and the kernel signals us, with SIGIO
# unless told otherwise, and SIGIO's default action ends the process. SIGURG is
# ignored by default; we never wait for the signal, we ask F_GETLEASE.
_BREAK_SIGNAL = getattr(signal, "SIGURG", 0)


class Verdict(enum.Enum):
    NO_WRITERS = "no_writers"
    WRITING = "writing"
    UNKNOWN = "unknown"
    GONE = "gone"  # no longer there (another watcher took it)


@dataclass
class WriterCheck:
    verdict: Verdict
    reason: str = ""  # why the kernel could not tell (UNKNOWN only)
    _fd: int | None = None

    def writer_waiting(self) -> bool:
        """True once a process has started opening the file for writing (it waits for us)."""
        if self._fd is None:
            return False
        try:
            return fcntl.fcntl(self._fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK
        except OSError:
            return True


@contextmanager
def check_writers(path: Path) -> Iterator[WriterCheck]:
    """Whether any process has ``path`` open for writing; the lease lasts the ``with``."""
    fd, check = _lease(path)
    try:
        yield check
    finally:
        if fd is not None:
            with suppress(OSError):  # closing the descriptor ends the lease anyway
                fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            os.close(fd)


def _lease(path: Path) -> tuple[int | None, WriterCheck]:
    if not _LEASES:
        return None, WriterCheck(Verdict.UNKNOWN, "no file leases on this system")
    try:
        # O_NONBLOCK: a write lease held by someone else (Samba's kernel oplocks) fails
        # the open with EWOULDBLOCK instead of waiting, and a FIFO swapped in never blocks.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except BlockingIOError:
        return None, WriterCheck(Verdict.WRITING)
    except FileNotFoundError:
        return None, WriterCheck(Verdict.GONE)
    except OSError as error:
        return None, WriterCheck(Verdict.UNKNOWN, f"cannot open it: {_name(error)}")
    try:
        _take_read_lease(fd)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return None, WriterCheck(Verdict.WRITING)
        return None, WriterCheck(Verdict.UNKNOWN, f"no lease: {_name(error)}")
    return fd, WriterCheck(Verdict.NO_WRITERS, _fd=fd)


def _take_read_lease(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETSIG, _BREAK_SIGNAL)
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)


def _name(error: OSError) -> str:
    return errno.errorcode.get(error.errno, str(error.errno)) if error.errno else str(error)
