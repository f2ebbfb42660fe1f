"""Operations: health of the database and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest

from engine.api.deps import ConsoleDep, RedactDep
from engine.api.schemas import HealthOut
from engine.errors import StorageError
from engine.store.storage import Storage

router = APIRouter()


def _ping(storage: Storage) -> None:
    """Reach the database or raise :class:`StorageError`.

    MERGE (issue #15): the store branch adds ``Storage.ping()``; replace this
    function's one use below with ``console.storage.ping()`` and delete it.
    """
    with storage.reading("ping"):
        pass  # opening a connection reaches the database


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the database is unreachable"}},
)
def healthz(console: ConsoleDep, redact: RedactDep) -> Any:
    """Whether the database answers a trivial query (why not, without local paths)."""
    try:
        _ping(console.storage)
    except StorageError as exc:
        detail = redact(str(exc).splitlines()[0])
        return JSONResponse({"status": "fail", "database": detail}, status_code=503)
    return HealthOut(status="ok", database="ok")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    """Monitor, cache, batch and storage figures in the Prometheus text format."""
    registry: CollectorRegistry = request.app.state.registry
    return PlainTextResponse(generate_latest(registry).decode())
