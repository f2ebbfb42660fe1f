"""The REST API: the seed's performance endpoints, job control, health and Prometheus metrics.

``create_app(console)`` builds a FastAPI app whose routes read and drive the
console they are given (kept in ``app.state.console``): the same storage,
cache, monitor and batch runner that do the work. ``recon api`` serves it with
uvicorn; the tests serve it on 127.0.0.1 and talk to it over HTTP.

Endpoints (JSON field names in camelCase, as in the seed; routers in
``engine.api.routers``, models in ``engine.api.schemas``)::

    GET  /api/reconciliation/performance/stats?timeWindow=MS&operation=NAME
    GET  /api/reconciliation/performance/bottlenecks?timeWindow=MS
    GET  /api/reconciliation/performance/report?timeWindow=MS
    GET  /api/reconciliation/performance/cache
    POST /api/reconciliation/performance/cache/clear          {clearCache, clearStorage}
    GET  /api/reconciliation/performance/resources?timeWindow=MS
    POST /api/reconciliation/performance/batch/process        {jobs: [...], config}
    GET  /api/reconciliation/performance/batch/{id}
    POST /api/reconciliation/performance/batch/{id}/cancel
    GET  /api/reconciliation/performance/optimization/recommendations?timeWindow=MS
    POST /api/reconciliation/jobs                              {targetMonth, districtIds, ...}
    GET  /api/reconciliation/jobs?month=YYYY-MM&status=S
    GET  /api/reconciliation/jobs/{id}
    GET  /api/reconciliation/jobs/{id}/timeline
    POST /api/reconciliation/jobs/{id}/cancel
    GET  /api/reconciliation/events?month=YYYY-MM&kind=K       (alert events, delivery state)
    GET  /api/reconciliation/workers                            (recon workers: alive or lost)
    GET  /healthz
    GET  /metrics                                              (Prometheus text format)

Rules: ``timeWindow`` is milliseconds (default 300000, at most 30 days). When a
token is configured, every POST needs ``Authorization: Bearer <token>``
(401 otherwise); without one, a POST from another site's page gets 403 and a
Host header other than the listening address or localhost gets 421
(:mod:`engine.api.guard`). Bodies above ``max_body_bytes`` get 413. Invalid input gets
422 (schema) or 400 (refused by the engine), unknown ids 404, a request that
conflicts with the current state (cancelling a finished job, starting a month
that a batch of this or another process is still working) 409; every error body is
``{"error": message, "field": name}``, and 422 bodies keep FastAPI's
``detail`` list as well (:mod:`engine.api.errors`: always valid JSON, without
local file paths). The calls a request makes are labelled ``origin="api"`` in the
monitor (:class:`ReadsForApi`): kept out of the engine's figures, as the dashboard's are.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api import errors
from engine.api.guard import SameOrigin
from engine.api.metrics import registry_for
from engine.api.paths import redactor_for
from engine.api.routers import batches, events, jobs, months, ops, performance, workers
from engine.app.console import Console
from engine.instrument import reads_for

API_ORIGIN = "api"  # the monitor's label of the reads the API makes for its clients


def create_app(
    console: Console, *, token: str | None = None, max_body_bytes: int = 1_000_000
) -> FastAPI:
    """The API over ``console``.

    Args:
        console: the engine the routes read and drive (not closed by the app).
        token: when set, every POST needs ``Authorization: Bearer <token>``; without
            one, cross-site POSTs and foreign Host headers are refused
            (:mod:`engine.api.guard`).
        max_body_bytes: larger request bodies get 413.
    """
    app = FastAPI(
        title="Month-end reconciliation console",
        version="1.0",
        description="Month-end close progress, job control and performance figures.",
    )
    app.state.console = console
    app.state.token = token or None
    app.state.registry = registry_for(console)
    app.state.redact = redactor_for(console.settings.source)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(ReadsForApi)
    if app.state.token is None:  # the outermost layer: refused before the body is read
        app.add_middleware(SameOrigin)
    routers = (performance, batches, jobs, months, events, workers, ops)
    for router in (module.router for module in routers):
        app.include_router(router)
    return app


class ReadsForApi:
    """ASGI middleware: the calls a request times are the API's (``origin="api"`` in the
    monitor, see :func:`engine.instrument.reads_for`), kept out of the engine's figures.
    Sync routes run in a thread pool that copies the request's context, so they carry it.
    Work a POST hands to the batch runner runs on its threads: the engine's own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with reads_for(API_ORIGIN):
            await self.app(scope, receive, send)


# --- request body limit ----------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: bodies above ``max_bytes`` get 413 before any route sees them.

    The body is read here (it is small by then) and replayed to the app, so a
    chunked upload without Content-Length is cut off as well.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send, declared.isdigit())
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send, True)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, too_large: bool) -> None:
        if too_large:
            response = errors.error(413, f"request body larger than {self.max_bytes} bytes", "body")
        else:
            response = errors.error(400, "invalid Content-Length header", "Content-Length")
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # e.g. waiting for a disconnect while streaming
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


__all__ = ["API_ORIGIN", "create_app"]
