"""Reconciliation over HTTP: the runs, newest first, and each run's report.

The data comes from ``pipeline.reconcile`` (``records.list_runs``,
``report.report_chunks``); this module only maps it onto HTTP. Include
``router`` in the app (``api.app.ROUTERS``); it asks for a bearer token like
every other document route.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from api.auth import require_token
from api.errors import ApiError, error_responses
from api.services import ServicesDep
from pipeline.reconcile import records
from pipeline.reconcile.report import report_chunks

router = APIRouter(prefix="/api/reconciliation", tags=["reconciliation"],
                   dependencies=[Depends(require_token)])

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
DEFAULT_PAGE = 50
MAX_PAGE = 500
# Run ids are 64-bit; larger numbers cannot name a run and must not reach the database.
MAX_ID = 2**63 - 1


@router.get("/runs/", responses=error_responses(401, 422))
def list_runs(services: ServicesDep,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
              offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> dict[str, Any]:
    """Reconciliation runs, newest first: ``{"count": N, "results": [run, ...]}``."""
    with services.runtime.session() as session:
        return records.list_runs(session, limit=limit, offset=offset)


@router.get("/runs/{run_id}/report/", response_class=StreamingResponse,
            responses={200: {"content": {"application/json": {}, "text/csv": {}}},
                       **error_responses(401, 404, 422)})
def run_report(run_id: Annotated[int, Path(ge=1, le=MAX_ID)], services: ServicesDep,
               format: Literal["json", "csv"] = "json",  # noqa: A002 - the API's name
               ) -> StreamingResponse:
    """One run's report, streamed: the run's summary and every finding."""
    chunks = report_chunks(services.runtime.engine, run_id, format)
    if chunks is None:
        raise ApiError(404, "not_found", f"no reconciliation run {run_id}")
    disposition = f'inline; filename="reconciliation-{run_id:06d}.{format}"'
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[format],
                             headers={"Content-Disposition": disposition})
