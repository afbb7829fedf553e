"""The errors the pipeline raises, in two branches that matter to a task queue.

    IngestError
    ├── TransientError        retrying can help: bucket, database or broker trouble
    └── PermanentError        retrying cannot help; carries an error code of INTERFACE.md
        ├── EmptyFile             empty_file
        ├── CorruptFile           corrupt
        ├── UnsupportedType       unsupported_type
        ├── TooLarge              too_large
        ├── DecompressionBomb     decompression_bomb
        ├── ParseTimeout          timeout
        └── Unreadable            unreadable

A task retries only the transient branch; a permanent error fails the document,
quarantines its file and lets the worker go on.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of everything the pipeline raises on purpose."""


class TransientError(IngestError):
    """A service hiccup: the same work may succeed later."""


class PermanentError(IngestError):
    """The input itself is the problem; the document ends ``failed`` with ``code``."""

    code = "corrupt"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class EmptyFile(PermanentError):
    code = "empty_file"


class CorruptFile(PermanentError):
    code = "corrupt"


class UnsupportedType(PermanentError):
    code = "unsupported_type"


class TooLarge(PermanentError):
    code = "too_large"


class DecompressionBomb(PermanentError):
    code = "decompression_bomb"


class ParseTimeout(PermanentError):
    code = "timeout"


class Unreadable(PermanentError):
    code = "unreadable"


ERROR_CODES = {
    cls.code: cls
    for cls in (EmptyFile, CorruptFile, UnsupportedType, TooLarge,
                DecompressionBomb, ParseTimeout, Unreadable)
}


def permanent_error(code: str, message: str) -> PermanentError:
    """Rebuild a permanent error from its code (e.g. one reported by the sandbox)."""
    return ERROR_CODES.get(code, CorruptFile)(message)
