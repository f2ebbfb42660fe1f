"""Operations: health of the database and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest

from engine.api.deps import ConsoleDep, RedactDep
from engine.api.schemas import HealthOut, WatcherOut, view
from engine.app import queries
from engine.errors import StorageError

router = APIRouter()


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the database is unreachable"}},
)
def healthz(console: ConsoleDep, redact: RedactDep) -> Any:
    """Whether the database answers a trivial query (why not, without local paths)."""
    try:
        console.storage.ping()
    except StorageError as exc:
        detail = redact(str(exc).splitlines()[0])
        return JSONResponse({"status": "fail", "database": detail}, status_code=503)
    watcher = queries.watcher_view(console)
    return HealthOut(status="ok", database="ok", watcher=view(WatcherOut, watcher))


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    """Monitor, cache, batch and storage figures in the Prometheus text format."""
    registry: CollectorRegistry = request.app.state.registry
    return PlainTextResponse(generate_latest(registry).decode())
