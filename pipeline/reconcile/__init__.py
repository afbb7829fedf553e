"""Reconciliation: the documents table against the bucket, with reports to act on.

``reconcile(runtime, RunOptions(...))`` runs one comparison and returns its
result; ``sluice reconcile``, the nightly beat task and the API all go through
it and through ``records``/``report`` for what earlier runs found. See ``run``
for the steps and ``merge`` for how the two sides meet.
"""

from pipeline.reconcile.findings import KINDS, REPAIRS, SAFE_REPAIRS, Finding
from pipeline.reconcile.lock import AlreadyRunning
from pipeline.reconcile.options import RunOptions
from pipeline.reconcile.run import RunResult, reconcile

__all__ = ["KINDS", "REPAIRS", "SAFE_REPAIRS", "AlreadyRunning", "Finding",
           "RunOptions", "RunResult", "reconcile"]
