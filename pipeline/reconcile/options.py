"""What a reconciliation run is asked to do, from the settings and the caller."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from pipeline.reconcile.findings import expand_repairs
from pipeline.settings import Settings


@dataclass(frozen=True)
class RunOptions:
    """A run's options; ``from_settings`` fills what the caller leaves out.

    ``seed`` picks the sample; it is kept with the run, so a sample can be drawn
    again the same way.
    """

    trigger: str = "cli"
    deep: bool = False
    sample_size: int = 100
    repairs: tuple[str, ...] = ()
    dry_run: bool = False
    orphan_grace_seconds: int = 3600
    stuck_after_seconds: int = 900
    concurrency: int = 8
    seed: int = field(default_factory=lambda: secrets.randbits(32))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunOptions:
        defaults = {
            "sample_size": settings.reconcile_sample_size,
            "orphan_grace_seconds": settings.reconcile_orphan_grace_seconds,
            "stuck_after_seconds": (settings.reconcile_stuck_after_seconds
                                    or settings.stuck_after_seconds),
            "concurrency": settings.reconcile_concurrency,
            "repairs": tuple(settings.reconcile_repairs),
        }
        given = {name: value for name, value in overrides.items() if value is not None}
        options = {**defaults, **given}
        options["repairs"] = expand_repairs(options["repairs"])
        return cls(**options)

    @property
    def mode(self) -> str:
        if self.deep:
            return "deep"
        return "sample" if self.sample_size else "listing"
