"""The sections ``python -m bench`` runs, in this order.

A section is a module with ``NAME``, ``TITLE`` and ``run(ctx) -> list[Result]``
(see ``bench.core``). To add one, write the module and list it here; ``e2e``
must come before ``floor`` (the floor's runs are interleaved with e2e's).
"""

from __future__ import annotations

from types import ModuleType

from bench import e2e, floor, migrate, reconcile, steps, upload, worker_rss

SECTIONS: list[ModuleType] = [steps, e2e, floor, worker_rss, upload, migrate, reconcile]
