"""Reconciliation over HTTP: the runs, newest first, and each run's report.

The data comes from ``pipeline.reconcile`` (``records.list_runs``,
``report.report_chunks``); this module only maps it onto HTTP. The app includes
``router`` behind its bearer-token dependency and provides the process's
``Runtime`` as ``app.state.runtime`` (or overrides ``get_runtime``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from pipeline.reconcile import records
from pipeline.reconcile.report import report_chunks
from pipeline.runtime import Runtime

router = APIRouter(prefix="/api/reconciliation", tags=["reconciliation"])

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
MAX_PAGE = 500


def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise RuntimeError("the API app has no runtime (app.state.runtime)")
    return runtime


AppRuntime = Annotated[Runtime, Depends(get_runtime)]


@router.get("/runs/")
def list_runs(runtime: AppRuntime,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
              offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """Reconciliation runs, newest first: ``{"count": N, "results": [run, ...]}``."""
    with runtime.session() as session:
        return records.list_runs(session, limit=limit, offset=offset)


@router.get("/runs/{run_id}/report/", response_model=None)
def run_report(run_id: int, runtime: AppRuntime,
               format: Literal["json", "csv"] = "json",  # noqa: A002 - the API's name
               ) -> StreamingResponse | JSONResponse:
    """One run's report, streamed: the run's summary and every finding."""
    chunks = report_chunks(runtime.engine, run_id, format)
    if chunks is None:
        return JSONResponse(status_code=404, content={"error": {
            "code": "not_found", "message": f"no reconciliation run {run_id}"}})
    name = f"reconciliation-{run_id:06d}.{format}"
    disposition = f'inline; filename="{name}"'
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[format],
                             headers={"Content-Disposition": disposition})
