"""Reading the corpus manifest's ``expect`` lines as outcomes of a single-file ingest."""

from __future__ import annotations

import re
import unicodedata

# Archives are stored as they are when dropped into the inbox; what the manifest
# says about unpacking them is for the batch migration.
ARCHIVE_PATHS_STORED_AS_IS = re.compile(r"\.(zip|tgz|tar\.gz)$")


def outcome(entry: dict) -> tuple[str, set[str]]:
    """("stored"|"failed"|"final", acceptable error codes) for a manifest entry."""
    expect = entry.get("expect", "")
    path = entry["path"]
    if expect.startswith("terminate"):
        return "final", set()
    if ARCHIVE_PATHS_STORED_AS_IS.search(path) and "corrupt" not in expect:
        return "stored", set()
    if not expect.startswith("reject"):
        return "stored", set()
    if "empty file" in expect:
        return "failed", {"empty_file"}
    if "decompression bomb" in expect:
        return "failed", {"decompression_bomb"}
    if "resource limit" in expect:
        return "failed", {"decompression_bomb", "timeout"}
    if "corrupt" in expect:
        return "failed", {"corrupt"}
    return "failed", {"corrupt", "unsupported_type"}


def normalize(text: str) -> str:
    """Compare text as the manifest does: whitespace collapsed; NFKC for presentation forms."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))
