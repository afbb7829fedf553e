"""A folder tree, walked in name order without following links.

Symbolic links (to files or folders) are refused, not followed: they could lead
anywhere on the machine. FIFOs, sockets and devices are refused without being
opened (opening a FIFO blocks). Folders that hold no documents (``.git``,
``@eaDir``, ``$RECYCLE.BIN``, hidden ones) are skipped as a whole.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pipeline.migration.entries import (
    LINK,
    SPECIAL_FILE,
    UNREADABLE,
    Entry,
    EntryRefused,
    Refusal,
    refused,
)
from pipeline.migration.streams import read_chunks
from pipeline.names import decode_name
from watchers.filters import is_ignored_name

log = logging.getLogger(__name__)

KEY_PREFIX = "f:"


def folder_entries(root: Path) -> Iterator[Entry]:
    """Every file under ``root``, as entries keyed by their relative path."""
    pending = [""]
    while pending:
        relative = pending.pop()
        listing = _list(root, relative)
        if isinstance(listing, Refusal):
            yield refused(KEY_PREFIX + relative + "/", _display(relative) + "/", 0,
                          listing.code, listing.message)
            continue
        folders = []
        for item in listing:
            path = f"{relative}/{item.name}" if relative else item.name
            if item.is_dir(follow_symlinks=False) and is_ignored_name(item.name):
                # One line in the report for the whole folder; the walk's filter
                # records it as ignored.
                yield Entry(key=KEY_PREFIX + path + "/", path=_display(path) + "/",
                            depth=0)
            elif item.is_dir(follow_symlinks=False):
                folders.append(path)
            else:
                yield _file_entry(item, path)
        # A stack walks depth first; reversed keeps the folders in name order.
        pending.extend(reversed(folders))


def measure(root: Path) -> tuple[int, int]:
    """Files and bytes under ``root``, for the progress display (links not followed)."""
    files = size = 0
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                for item in listing:
                    if item.is_dir(follow_symlinks=False):
                        if not is_ignored_name(item.name):
                            pending.append(Path(item.path))
                    elif item.is_file(follow_symlinks=False):
                        files += 1
                        size += item.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return files, size


def _list(root: Path, relative: str) -> list[os.DirEntry[str]] | Refusal:
    try:
        with os.scandir(root / relative if relative else root) as listing:
            return sorted(listing, key=lambda item: item.name)
    except OSError as error:
        return Refusal(UNREADABLE, f"cannot list the folder: {error.strerror or error}")


def _file_entry(item: os.DirEntry[str], path: str) -> Entry:
    key, display = KEY_PREFIX + path, _display(path)
    try:
        info = item.stat(follow_symlinks=False)
    except OSError as error:
        return refused(key, display, 0, UNREADABLE,
                       f"cannot stat: {error.strerror or error}")
    modified = datetime.fromtimestamp(info.st_mtime, UTC)
    if stat.S_ISLNK(info.st_mode):
        target = _link_target(item.path)
        return refused(key, display, 0, LINK, f"symbolic link to {target}",
                       modified_at=modified)
    if not stat.S_ISREG(info.st_mode):
        return refused(key, display, 0, SPECIAL_FILE,
                       f"not a regular file ({_kind(info.st_mode)})",
                       modified_at=modified)
    return Entry(key=key, path=display, depth=0, size=info.st_size,
                 modified_at=modified, opener=lambda: _read_regular(item.path))


def _read_regular(path: str) -> Iterator[bytes]:
    """Open without following links or blocking, then insist on a regular file.

    The file may have been swapped for a link or a FIFO since it was listed.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        code = LINK if error.errno == errno.ELOOP else UNREADABLE  # it became a link
        raise EntryRefused(code, f"cannot open: {error.strerror or error}") from error
    with os.fdopen(descriptor, "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            raise EntryRefused(SPECIAL_FILE, "no longer a regular file")
        try:
            yield from read_chunks(source)
        except OSError as error:
            raise EntryRefused(UNREADABLE,
                               f"read failed: {error.strerror or error}") from error


def _link_target(path: str) -> str:
    try:
        return decode_name(os.readlink(path))
    except OSError:
        return "?"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _display(path: str) -> str:
    return decode_name(path)
