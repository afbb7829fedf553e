"""What the user asked of a migration: labels, folder maps and globs.

Folder maps turn folder names into categories or tags (``Rechnungen=category:
invoice``, ``2009=tag:2009``): a rule matches a folder of the entry's path, or
with "/" in it a run of folders (``Altarchiv/Eingang``), case-insensitively,
with shell wildcards. The deepest matching category wins; tags add up.

Globs: ``--exclude`` and ``--include`` match the whole relative path when the
pattern holds "/", otherwise the base name (``*.pdf``). Excludes also skip
whole archives and folders; includes apply to files only, so archives are still
opened to find the files they hold.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.migration.entries import EXCLUDED, IGNORED
from watchers.filters import is_ignored

# Folders that archive tools fill with their own metadata.
TOOL_FOLDERS = {"__macosx"}


class BadRule(ValueError):
    """A folder map that is not ``FOLDER=category:NAME`` or ``FOLDER=tag:NAME``."""


@dataclass(frozen=True)
class FolderRule:
    folder: str
    category: str | None = None
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> FolderRule:
        folder, _, label = text.partition("=")
        kind, _, value = label.partition(":")
        folder, value = folder.strip().strip("/"), value.strip()
        kind = kind.strip().lower()
        if not folder or not value or kind not in ("category", "tag"):
            raise BadRule(f"{text!r}: expected FOLDER=category:NAME or FOLDER=tag:NAME")
        return cls(folder, **{kind: value})

    def deepest_match(self, folders: list[str]) -> int:
        """Index of the deepest folder this rule matches (a run's end); -1 if none."""
        pattern = self.folder.lower()
        width = pattern.count("/") + 1
        for start in range(len(folders) - width, -1, -1):
            run = "/".join(folders[start:start + width]).lower()
            if fnmatch.fnmatchcase(run, pattern):
                return start + width - 1
        return -1

    def as_text(self) -> str:
        return f"{self.folder}=category:{self.category}" if self.category \
            else f"{self.folder}=tag:{self.tag}"


def read_rules(path: Path) -> list[FolderRule]:
    """Rules from a file, one per line; blank lines and ``#`` comments are skipped."""
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append(FolderRule.parse(line))
    return rules


@dataclass(frozen=True)
class MigrationOptions:
    category: str | None = None
    tags: tuple[str, ...] = ()
    rules: tuple[FolderRule, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    uploaded_by: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What decides how documents come in; the run id is made from it."""
        return {
            "category": self.category, "tags": list(self.tags),
            "maps": [rule.as_text() for rule in self.rules],
            "include": list(self.include), "exclude": list(self.exclude),
            "uploaded_by": self.uploaded_by,
        }

    def categories(self) -> set[str]:
        named = {rule.category for rule in self.rules if rule.category}
        return named | ({self.category} if self.category else set())

    def labels(self, path: str) -> tuple[str | None, list[str]]:
        """The category and tags of the entry at ``path``."""
        folders = path.split("/")[:-1]
        category, category_depth, tags = self.category, -1, list(self.tags)
        for rule in self.rules:
            depth = rule.deepest_match(folders)
            if depth < 0:
                continue
            if rule.category and depth > category_depth:
                category, category_depth = rule.category, depth
            if rule.tag and rule.tag not in tags:
                tags.append(rule.tag)
        return category, tags

    def skip_reason(self, path: str) -> tuple[str, str] | None:
        """(outcome, reason) when the entry is skipped by choice, else None."""
        parts = PurePosixPath(path.rstrip("/"))
        in_tool_folder = any(part.lower() in TOOL_FOLDERS for part in parts.parts)
        if is_ignored(parts) or in_tool_folder:
            return IGNORED, "not a document (a system, hidden or temporary file)"
        for pattern in self.exclude:
            if glob_matches(pattern, path):
                return EXCLUDED, f"matches --exclude {pattern}"
        return None

    def includes(self, path: str) -> bool:
        return not self.include or any(glob_matches(p, path) for p in self.include)


def glob_matches(pattern: str, path: str) -> bool:
    path = path.rstrip("/")
    subject = path if "/" in pattern else path.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(subject.lower(), pattern.lower())

