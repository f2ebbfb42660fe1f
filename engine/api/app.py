"""The REST API: the seed's performance endpoints, job control, health and Prometheus metrics.

``create_app(console)`` builds a FastAPI app whose routes read and drive the
console they are given (kept in ``app.state.console``): the same storage,
cache, monitor and batch runner that do the work. ``recon api`` serves it with
uvicorn; the tests serve it on 127.0.0.1 and talk to it over HTTP.

Endpoints (JSON field names in camelCase, as in the seed)::

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
    GET  /api/reconciliation/months/{month}/final.csv           (the month's final figures)
    POST /api/reconciliation/jobs/{id}/cancel
    GET  /healthz
    GET  /metrics                                              (Prometheus text format)

Rules: ``timeWindow`` is milliseconds (default 300000, at most 30 days). When a
token is configured, every POST needs ``Authorization: Bearer <token>``
(401 otherwise). Bodies above ``max_body_bytes`` get 413. Invalid input gets
422 (schema) or 400 (refused by the engine), unknown ids 404, a request that
conflicts with the current state (cancelling a finished job, starting a month
that a batch of this process is still working) 409; every error body is
``{"error": message, "field": name}``, and 422 bodies keep FastAPI's
``detail`` list as well.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.types import DecoratedCallable
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.app import queries
from engine.app.console import Console
from engine.batch.runner import BatchDetail, ItemRecord, SubmitResult
from engine.clock import as_utc
from engine.domain.models import Job, JobStatus, Phase, Reason, TimelineEntry, validate_month
from engine.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    EngineError,
    NotFoundError,
    StorageError,
)
from engine.monitor.core import Bottleneck, OperationStats
from engine.settings import BatchSettings

PREFIX = "/api/reconciliation"
DEFAULT_WINDOW_MS = 300_000
MAX_WINDOW_MS = 30 * 86_400_000
MAX_JOBS = 1_000
"""Jobs (districts) one request may start."""
MAX_SAMPLES = 1_000
"""Resource samples one response carries (the latest); ``dataPoints`` counts them all."""
MAX_ID = 2**63 - 1  # SQLite integers; larger ids cannot exist

# Names the seed spelled differently from plain camelCase.
_ALIASES: dict[str, str] = {
    "memory_usage_mb": "memoryUsageMB",
    "average_memory_mb": "averageMemoryMB",
    "peak_memory_mb": "peakMemoryMB",
    **{f.name: f.metadata["seed"] for f in dataclasses.fields(BatchSettings)},
}


def camel(name: str) -> str:
    """``share_of_time`` -> ``shareOfTime``; names without underscores are kept as they are."""
    if name in _ALIASES:
        return _ALIASES[name]
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


Timestamp = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime that always carries its offset (RFC 3339 ``date-time``)."""


def _camel_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    return {camel(k): v for k, v in values.items()}


M = TypeVar("M", bound=BaseModel)


def _out(model: type[M], value: object, **values: Any) -> M:
    """``model`` from the engine value's attributes of the same names, and ``values``."""
    alike = {name: getattr(value, name) for name in model.model_fields if hasattr(value, name)}
    return model.model_validate({**alike, **values})


# --- request models ------------------------------------------------------------------------


def _month(value: str) -> str:
    try:
        return validate_month(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


Month = Annotated[
    str, Field(pattern=r"^\d{4}-\d{2}$", examples=["2025-06"]), AfterValidator(_month)
]
District = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9]{1,4}$", examples=["42", "F"]), AfterValidator(str.upper)
]
Priority = Annotated[int, Field(ge=-1000, le=1000, description="higher runs first")]
TimeWindow = Annotated[
    int,
    Query(
        alias="timeWindow",
        gt=0,
        le=MAX_WINDOW_MS,
        description="window in milliseconds (at most 30 days)",
    ),
]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


class In(BaseModel):
    model_config = ConfigDict(alias_generator=camel, extra="forbid")


class BatchConfigIn(In):
    """Batch settings with the seed's names; values outside their range are clamped."""

    max_concurrent_jobs: int | None = None
    batch_size: int | None = None
    retry_attempts: int | None = None
    retry_delay_ms: int | None = None
    timeout_ms: int | None = None
    enable_resource_throttling: bool | None = None
    memory_threshold_mb: int | None = None


class BatchJobIn(In):
    district_id: District
    target_month: Month
    priority: Priority = 0


class BatchProcessIn(In):
    jobs: list[BatchJobIn] = Field(min_length=1, max_length=MAX_JOBS)
    config: BatchConfigIn | None = None


class StartJobsIn(In):
    target_month: Month
    district_ids: list[District] | None = Field(
        None, min_length=1, max_length=MAX_JOBS, description="default: every published district"
    )
    priority: Priority = 0
    config: BatchConfigIn | None = None


class CacheClearIn(In):
    clear_cache: bool = True
    clear_storage: bool = False


# --- response models -----------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(
        alias_generator=camel,
        validate_by_name=True,
        validate_by_alias=True,
        from_attributes=True,
        # Answers carry every field, defaults too (engine dataclasses such as BatchSettings).
        json_schema_serialization_defaults_required=True,
    )


class ErrorOut(Out):
    error: str
    field: str | None = None


class OperationStatsOut(Out):
    """One operation over the window; durations in milliseconds (seed names first)."""

    operation_name: str
    total_calls: int
    successful_calls: int
    failed_calls: int
    average_duration: float
    min_duration: float
    max_duration: float
    p50_duration: float
    p95_duration: float
    p99_duration: float
    total_duration: float
    success_rate: float
    calls_per_second: float
    share_of_time: float
    errors: dict[str, int] = Field(description="failures by error type")


class StatsOut(Out):
    stats: OperationStatsOut | list[OperationStatsOut] = Field(
        description="one operation's figures when `operation` is given, else every operation's"
    )
    time_window_ms: int
    total_operations: int


class BottleneckOut(Out):
    operation_name: str
    rule: str
    severity: Literal["high", "medium", "low"]
    issue: str
    recommendation: str
    values: dict[str, float] = Field(description="the numbers that made the rule fire")
    stats: OperationStatsOut | None


class BottlenecksOut(Out):
    bottlenecks: list[BottleneckOut]
    time_window_ms: int
    total_bottlenecks: int
    high_severity_count: int
    medium_severity_count: int
    low_severity_count: int


class RecommendationOut(Out):
    category: str
    priority: Literal["high", "medium", "low"]
    recommendation: str
    values: dict[str, float]


class RecommendationsOut(Out):
    recommendations: list[RecommendationOut]
    total_recommendations: int
    high_priority: int
    medium_priority: int
    low_priority: int
    generated_at: Timestamp


class FigureOut(Out):
    avg: float
    peak: float


class ResourceSummaryOut(Out):
    """Averages and peaks over the window; ``null`` without samples."""

    average_memory_mb: float | None
    peak_memory_mb: float | None
    average_cpu_percent: float | None
    peak_cpu_percent: float | None
    data_points: int
    figures: dict[str, FigureOut] = Field(description="every resource figure and engine gauge")


class ResourceSampleOut(Out):
    timestamp: int = Field(description="milliseconds since the epoch")
    process: str
    memory_usage_mb: float
    cpu_usage_percent: float
    cache_hit_rate: float | None
    figures: dict[str, float]


class ResourcesOut(Out):
    metrics: list[ResourceSampleOut] = Field(description=f"the latest {MAX_SAMPLES} at most")
    summary: ResourceSummaryOut
    time_window_ms: int
    data_points: int
    source: str = Field(description="memory (this process) or history (every process)")


class ReportSummaryOut(Out):
    total_operations: int
    unique_operations: int
    failures: int
    overall_success_rate: float | None
    average_response_time: float | None = Field(description="milliseconds")


class ReportBodyOut(Out):
    summary: ReportSummaryOut
    top_operations: list[OperationStatsOut]
    bottlenecks: list[BottleneckOut]
    resource_summary: ResourceSummaryOut
    recommendations: list[RecommendationOut]
    source: str


class ReportOut(Out):
    report: ReportBodyOut
    generated_at: Timestamp
    time_window_ms: int


class CacheFiguresOut(Out):
    """What a cache layer and the whole cache service both report; latencies in microseconds."""

    hit_rate: float | None
    evictions: int
    expirations: int
    prefetches: int
    prefetch_hits: int
    size: int
    max_size: int
    hit_mean_us: float
    hit_p95_us: float
    miss_mean_us: float
    miss_p95_us: float


class CacheLayerOut(CacheFiguresOut):
    hits: int
    misses: int


class CacheStatsOut(CacheFiguresOut):
    total_hits: int
    total_misses: int
    prefetch_dropped: int
    prefetch_errors: int
    layers: dict[str, CacheLayerOut]


class StorageCacheOut(Out):
    enable_in_memory_cache: bool
    size: int
    index_size: int
    cache_max_size: int
    hits: int
    misses: int
    hit_rate: float
    pending_writes: int
    roundtrips: int


class CacheOut(Out):
    cache: CacheStatsOut
    storage: StorageCacheOut
    timestamp: Timestamp


class CacheClearOut(Out):
    success: bool
    message: str
    cleared_items: int = Field(description="caches cleared (as in the seed)")
    cache_entries_cleared: int
    storage_entries_cleared: int
    timestamp: Timestamp


class StartedOut(Out):
    success: bool
    batch_id: int = Field(description="the first batch; one batch per target month")
    batch_ids: list[int]
    message: str
    job_count: int
    started_at: Timestamp
    config: BatchSettings = Field(description="the batch settings after clamping")
    notes: list[str] = Field(description="what clamping changed")


class AttemptOut(Out):
    attempt: int
    started_at: Timestamp
    ended_at: Timestamp
    outcome: str
    error: str | None


class BatchItemOut(Out):
    item_id: int
    job_id: int | None
    district_id: str | None
    target_month: str | None
    priority: int
    status: str
    result: dict[str, Any] | None
    error: str | None
    finished_at: Timestamp | None
    attempts: list[AttemptOut]


class BatchProgressOut(Out):
    queued: int
    running: int
    retrying: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    percent: float
    throughput_per_second: float
    eta_seconds: float | None
    elapsed_seconds: float
    throttled_seconds: float


class BatchOut(Out):
    batch_id: int
    name: str
    status: str = Field(description="running, finished or cancelled")
    done: bool
    created_at: Timestamp
    finished_at: Timestamp | None
    total: int
    counts: dict[str, int]
    config: dict[str, Any]
    progress: BatchProgressOut | None = Field(description="live figures (batches of this process)")
    items: list[BatchItemOut]


class JobProgressOut(Out):
    stability: float = Field(description="share of the stability period achieved, 0-1")
    days_left: int
    eta: date | None


class JobOut(Out):
    id: int
    run_id: int
    district_id: str
    target_month: str
    status: JobStatus
    phase: Phase | None
    reason: Reason | None
    error: str | None
    created_at: Timestamp | None
    completed_at: Timestamp | None
    final_as_of: date | None
    last_check_date: date | None
    checks: int
    significant_changes: int
    stable_days: int
    extension_days: int
    attempts: int
    progress: JobProgressOut


class MonthProgressOut(Out):
    run_id: int | None
    total: int
    by_status: dict[str, int]
    by_phase: dict[str, int]
    by_reason: dict[str, int]
    percent_finalized: float
    projected_close: date | None


class JobsOut(Out):
    target_month: str
    jobs: list[JobOut]
    total: int
    progress: MonthProgressOut


class ChangeOut(Out):
    metric: str
    old: float
    new: float
    delta: float
    pct: float | None = Field(description="relative change in percent; null from 0")
    significant: bool


class TimelineEntryOut(Out):
    as_of: date
    checked_at: Timestamp
    data_month: str | None
    metrics: dict[str, float]
    changes: list[ChangeOut]
    significant: bool
    note: str


class TimelineOut(Out):
    job_id: int
    entries: list[TimelineEntryOut]
    total: int


class HealthOut(Out):
    status: Literal["ok", "fail"]
    database: str


# --- errors ----------------------------------------------------------------------------------


class ApiError(Exception):
    """An answer other than 200, with a message and the field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, **extra}, status_code=status)


def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    response = _error(exc.status, str(exc), exc.field)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _on_engine_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, NotFoundError):
        return _error(404, str(exc), "id")
    if isinstance(exc, ConflictError):
        return _error(409, str(exc), "id")
    if isinstance(exc, ConfigError):
        return _error(400, str(exc), exc.field)
    # The database or the runner is unavailable: the server's problem, not the request's.
    status = 503 if isinstance(exc, StorageError | BatchError) else 500
    return _error(status, str(exc))


def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (a body that is not UTF-8 JSON, an unknown path) in our shape."""
    assert isinstance(exc, StarletteHTTPException)
    field = "body" if exc.status_code == 400 else None
    response = _error(exc.status_code, str(exc.detail), field)
    response.headers.update(exc.headers or {})
    return response


def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    names = [str(p) for p in first["loc"] if p not in ("body", "query", "path", "header")]
    field = ".".join(names) or "body"
    return _error(422, f"{field}: {first['msg']}", field, detail=errors)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "refused by the engine"},
    404: {"model": ErrorOut, "description": "no such id, or no data"},
    409: {"model": ErrorOut, "description": "conflicts with the current state"},
    401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
    413: {"model": ErrorOut, "description": "request body too large"},
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _ERRORS[code] for code in codes}


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
            response = _error(413, f"request body larger than {self.max_bytes} bytes", "body")
        else:
            response = _error(400, "invalid Content-Length header", "Content-Length")
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


# --- dependencies ----------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    description="Required by every POST when the server has a token (api.token, RECON_API_TOKEN)",
)


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token: str | None = request.app.state.token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "a valid 'Authorization: Bearer <token>' header is required", "token")


ConsoleDep = Annotated[Console, Depends(_console)]


def _post(app: FastAPI, path: str, *codes: int) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A POST route: it needs the token (when set), its body is limited, ``codes`` documented."""
    return app.post(
        path, dependencies=[Depends(_authorize)], responses=_responses(401, 413, *codes)
    )


# --- engine values to responses ---------------------------------------------------------------


def _stats_out(s: OperationStats) -> OperationStatsOut:
    return OperationStatsOut(
        operation_name=s.operation,
        total_calls=s.calls,
        successful_calls=s.successes,
        failed_calls=s.failures,
        average_duration=s.mean_ms,
        min_duration=s.min_ms,
        max_duration=s.max_ms,
        p50_duration=s.p50_ms,
        p95_duration=s.p95_ms,
        p99_duration=s.p99_ms,
        total_duration=s.total_ms,
        success_rate=s.success_rate,
        calls_per_second=s.calls_per_second,
        share_of_time=s.share_of_time,
        errors=dict(s.errors),
    )


def _bottleneck_out(b: Bottleneck, stats: Mapping[str, OperationStats]) -> BottleneckOut:
    found = stats.get(b.operation)
    return BottleneckOut(
        operation_name=b.operation,
        rule=b.rule,
        severity=b.severity,
        issue=b.message,
        recommendation=b.recommendation,
        values=_camel_keys(b.values),
        stats=_stats_out(found) if found is not None else None,
    )


def _advice_out(advice: Mapping[str, Any]) -> RecommendationOut:
    return RecommendationOut(
        category=advice["category"],
        priority=advice["priority"],
        recommendation=advice["message"],
        values=_camel_keys(advice["values"]),
    )


def _resource_summary(summary: Mapping[str, Mapping[str, float]], count: int) -> ResourceSummaryOut:
    def figure(name: str, key: str) -> float | None:
        found = summary.get(name)
        return None if found is None else found[key]

    return ResourceSummaryOut(
        average_memory_mb=figure("rss_mb", "avg"),
        peak_memory_mb=figure("rss_mb", "peak"),
        average_cpu_percent=figure("cpu_percent", "avg"),
        peak_cpu_percent=figure("cpu_percent", "peak"),
        data_points=count,
        figures={camel(k): FigureOut(avg=v["avg"], peak=v["peak"]) for k, v in summary.items()},
    )


def _sample_out(sample: Mapping[str, Any]) -> ResourceSampleOut:
    figures = {k: float(v) for k, v in sample.items() if k not in ("at", "process")}
    at: datetime = sample["at"]
    return ResourceSampleOut(
        timestamp=round(at.timestamp() * 1000),
        process=sample["process"],
        memory_usage_mb=figures.get("rss_mb", 0.0),
        cpu_usage_percent=figures.get("cpu_percent", 0.0),
        cache_hit_rate=figures.get("cache_hit_rate"),
        figures=_camel_keys(figures),
    )


def _cache_out(stats: Mapping[str, Any]) -> CacheStatsOut:
    total = stats["total"]
    renamed = {"hits": "total_hits", "misses": "total_misses"}
    return CacheStatsOut(
        **{renamed.get(k, k): v for k, v in total.items()},
        layers={name: CacheLayerOut(**layer) for name, layer in stats["layers"].items()},
    )


def _job_out(console: Console, job: Job) -> JobOut:
    progress = console.reconciler.job_progress(job)
    return _out(JobOut, job, district_id=job.district, target_month=job.month, progress=progress)


def _entry_out(entry: TimelineEntry) -> TimelineEntryOut:
    changes = [_out(ChangeOut, c, metric=camel(c.metric)) for c in entry.changes]
    return _out(TimelineEntryOut, entry, metrics=_camel_keys(entry.metrics), changes=changes)


def _item_out(item: ItemRecord) -> BatchItemOut:
    spec = item.spec
    return _out(
        BatchItemOut,
        item,
        job_id=spec.get("job_id"),
        district_id=spec.get("district"),
        target_month=spec.get("month"),
        result=item.result if isinstance(item.result, dict) else None,
    )


def _progress_out(console: Console, batch_id: int) -> BatchProgressOut | None:
    try:
        p = console.batch.progress(batch_id)
    except ConfigError:
        return None  # a batch of another process: its stored counts are all there is
    return _out(
        BatchProgressOut,
        p,
        throughput_per_second=p.throughput,
        eta_seconds=p.eta_s,
        elapsed_seconds=p.elapsed_s,
        throttled_seconds=p.throttled_s,
    )


def _batch_out(console: Console, detail: BatchDetail) -> BatchOut:
    info = detail.info
    return _out(
        BatchOut,
        info,
        done=info.status != "running",
        config=_camel_keys(info.config),
        progress=_progress_out(console, info.batch_id),
        items=[_item_out(item) for item in detail.items],
    )


# --- starting months -------------------------------------------------------------------------


def _start(
    console: Console,
    months: Sequence[tuple[str, list[str] | None, int]],
    config: BatchConfigIn | None,
) -> StartedOut:
    """Start a batch per (month, districts, priority); refuse months a batch still works."""
    raw = config.model_dump(by_alias=True, exclude_none=True) if config is not None else None
    results: list[SubmitResult] = []
    for month, districts, priority in months:
        try:
            results.append(
                console.start_batch(month, districts=districts, priority=priority, config=raw)
            )
        except ConflictError as exc:  # the month is still being worked
            raise ApiError(409, str(exc), "targetMonth") from exc
    details = [console.batch.batch_detail(r.batch_id) for r in results]
    notes = [note for r in results for note in r.notes]
    notes += [
        _resumed_note(m, d, detail) for (m, d, _), detail in zip(months, details, strict=True)
    ]
    return StartedOut(
        success=True,
        batch_id=results[0].batch_id,
        batch_ids=[r.batch_id for r in results],
        message="Batch processing started",
        job_count=sum(d.info.total for d in details),
        started_at=console.clock.now(),
        config=results[0].config,
        notes=[note for note in dict.fromkeys(notes) if note],
    )


def _resumed_note(month: str, asked: list[str] | None, detail: BatchDetail) -> str:
    """Say so when the month's unfinished run continued instead of the districts asked for."""
    worked = {item.spec.get("district") for item in detail.items}
    if asked is None or worked == set(asked):
        return ""
    return (
        f"{month} has an unfinished run: its districts {', '.join(sorted(map(str, worked)))} "
        "continue; start the others once it has completed"
    )


def _group_by_month(jobs: Sequence[BatchJobIn]) -> tuple[list[tuple[str, list[str], int]], str]:
    """One entry per month (districts in order, without repeats) and a note on priorities."""
    months: dict[str, dict[str, int]] = {}
    for job in jobs:
        districts = months.setdefault(job.target_month, {})
        districts[job.district_id] = max(job.priority, districts.get(job.district_id, job.priority))
    grouped = [(m, list(d), max(d.values())) for m, d in months.items()]
    mixed = [m for m, d in months.items() if len(set(d.values())) > 1]
    note = (
        f"one batch per month runs at its highest job priority: {', '.join(mixed)}" if mixed else ""
    )
    return grouped, note


# --- routes ----------------------------------------------------------------------------------


def _performance_routes(app: FastAPI) -> None:
    base = f"{PREFIX}/performance"

    @app.get(f"{base}/stats", responses=_responses(404))
    def stats(
        console: ConsoleDep,
        time_window: TimeWindow = DEFAULT_WINDOW_MS,
        operation: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> StatsOut:
        """Per-operation statistics; 404 when ``operation`` has no data in the window."""
        found = console.monitor.stats(time_window / 1000, operation)
        if operation is not None and not found:
            raise ApiError(
                404,
                f"No performance data found for operation {operation!r} in the last "
                f"{time_window} ms",
                "operation",
            )
        out = [_stats_out(s) for s in found]
        return StatsOut(
            stats=out[0] if operation is not None else out,
            time_window_ms=time_window,
            total_operations=len(out),
        )

    @app.get(f"{base}/bottlenecks")
    def bottlenecks(
        console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS
    ) -> BottlenecksOut:
        """Rules that fire over the window, most severe first, with counts per severity."""
        window = time_window / 1000
        stats = {s.operation: s for s in console.monitor.stats(window)}
        found = [_bottleneck_out(b, stats) for b in console.monitor.bottlenecks(window)]
        severities = [b.severity for b in found]
        return BottlenecksOut(
            bottlenecks=found,
            time_window_ms=time_window,
            total_bottlenecks=len(found),
            high_severity_count=severities.count("high"),
            medium_severity_count=severities.count("medium"),
            low_severity_count=severities.count("low"),
        )

    @app.get(f"{base}/report")
    def report(console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS) -> ReportOut:
        """Summary, top operations, bottlenecks, resource summary and recommendations."""
        window = time_window / 1000
        found = console.monitor.report(window)
        stats = [OperationStats(**s) for s in found["top_operations"]]
        by_name = {s.operation: s for s in console.monitor.stats(window)}
        summary = found["summary"]
        resources = found["resources"]
        body = ReportBodyOut(
            summary=ReportSummaryOut(
                total_operations=summary["total_operations"],
                unique_operations=summary["distinct_operations"],
                failures=summary["failures"],
                overall_success_rate=summary["success_rate"],
                average_response_time=summary["mean_response_ms"],
            ),
            top_operations=[_stats_out(s) for s in stats],
            bottlenecks=[_bottleneck_out(Bottleneck(**b), by_name) for b in found["bottlenecks"]],
            resource_summary=_resource_summary(resources["summary"], resources["count"]),
            recommendations=[_advice_out(a) for a in found["recommendations"]],
            source=found["source"],
        )
        return ReportOut(
            report=body, generated_at=found["generated_at"], time_window_ms=time_window
        )

    @app.get(f"{base}/resources")
    def resources(console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS) -> ResourcesOut:
        """Resource samples (process and engine gauges) and their average and peak."""
        found = console.monitor.resources(time_window / 1000)
        samples = found["samples"][-MAX_SAMPLES:]
        return ResourcesOut(
            metrics=[_sample_out(s) for s in samples],
            summary=_resource_summary(found["summary"], found["count"]),
            time_window_ms=time_window,
            data_points=found["count"],
            source=found["source"],
        )

    @app.get(f"{base}/optimization/recommendations")
    def recommendations(
        console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS
    ) -> RecommendationsOut:
        """Advice from the monitor's findings, most urgent first."""
        found = [_advice_out(a) for a in console.monitor.recommendations(time_window / 1000)]
        priorities = [a.priority for a in found]
        return RecommendationsOut(
            recommendations=found,
            total_recommendations=len(found),
            high_priority=priorities.count("high"),
            medium_priority=priorities.count("medium"),
            low_priority=priorities.count("low"),
            generated_at=console.clock.now(),
        )

    _cache_routes(app, base)
    _batch_routes(app, base)


def _cache_routes(app: FastAPI, base: str) -> None:
    @app.get(f"{base}/cache")
    def cache(console: ConsoleDep) -> CacheOut:
        """The cache service's statistics (total and per layer) and the storage cache's."""
        return CacheOut(
            cache=_cache_out(console.cache.stats()),
            storage=StorageCacheOut.model_validate(console.storage.cache_stats()),
            timestamp=console.clock.now(),
        )

    @_post(app, f"{base}/cache/clear", 400)
    def clear_cache(console: ConsoleDep, body: CacheClearIn | None = None) -> CacheClearOut:
        """Empty the cache service (``clearCache``, default) and/or the storage cache."""
        body = body or CacheClearIn()
        cache = console.cache.clear() if body.clear_cache else 0
        storage = console.storage.clear_cache() if body.clear_storage else 0
        return CacheClearOut(
            success=True,
            message="Caches cleared successfully",
            cleared_items=int(body.clear_cache) + int(body.clear_storage),
            cache_entries_cleared=cache,
            storage_entries_cleared=storage,
            timestamp=console.clock.now(),
        )


def _batch_routes(app: FastAPI, base: str) -> None:
    @_post(app, f"{base}/batch/process", 400, 409)
    def process_batch(console: ConsoleDep, body: BatchProcessIn) -> StartedOut:
        """Start the listed jobs (one batch per month) and answer at once with the batch id."""
        months, note = _group_by_month(body.jobs)
        started = _start(console, months, body.config)
        if note:
            started.notes.append(note)
        return started

    @app.get(f"{base}/batch/{{batch_id}}", responses=_responses(404))
    def batch_status(console: ConsoleDep, batch_id: Id) -> BatchOut:
        """A batch's status, live progress, items and every attempt."""
        return _batch_out(console, console.batch.batch_detail(batch_id))

    @_post(app, f"{base}/batch/{{batch_id}}/cancel", 404, 409)
    def cancel_batch(console: ConsoleDep, batch_id: Id) -> BatchOut:
        """Cancel a running batch: queued items are dropped, running ones stopped."""
        if console.batch.batch_detail(batch_id).info.status != "running":
            raise ApiError(409, f"batch {batch_id} has already ended", "id")
        try:
            console.batch.cancel(batch_id)
        except ConfigError as exc:  # it ended meanwhile
            raise ApiError(409, f"batch {batch_id} has already ended", "id") from exc
        return _batch_out(console, console.batch.batch_detail(batch_id))


def _job_routes(app: FastAPI) -> None:
    base = f"{PREFIX}/jobs"

    @_post(app, base, 400, 409)
    def start_jobs(console: ConsoleDep, body: StartJobsIn) -> StartedOut:
        """Start (or resume) a month for some districts, or every published one."""
        districts = list(dict.fromkeys(body.district_ids)) if body.district_ids else None
        return _start(console, [(body.target_month, districts, body.priority)], body.config)

    @app.get(base)
    def list_jobs(
        console: ConsoleDep,
        month: Annotated[Month, Query(description="target month YYYY-MM")],
        status: JobStatus | None = None,
    ) -> JobsOut:
        """The jobs of the month's latest run, optionally with one status, and its progress."""
        found = console.jobs(month, status.value if status else None)
        progress = console.month_progress(month)
        return JobsOut(
            target_month=month,
            jobs=[_job_out(console, j) for j in found],
            total=len(found),
            progress=MonthProgressOut.model_validate(progress),
        )

    @app.get(
        f"{PREFIX}/months/{{month}}/final.csv",
        response_class=PlainTextResponse,
        responses={**_responses(404), 200: {"content": {"text/csv": {}}}},
    )
    def final_csv(console: ConsoleDep, month: Month) -> PlainTextResponse:
        """The month's final figures as CSV, one row per district (as ``recon export``)."""
        return PlainTextResponse(
            queries.final_csv(console, month),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="final-figures-{month}.csv"'},
        )

    @app.get(f"{base}/{{job_id}}", responses=_responses(404))
    def get_job(console: ConsoleDep, job_id: Id) -> JobOut:
        """One job with its progress and ETA."""
        return _job_out(console, console.job(job_id))

    @app.get(f"{base}/{{job_id}}/timeline", responses=_responses(404))
    def timeline(console: ConsoleDep, job_id: Id) -> TimelineOut:
        """Every check of the job: as-of date, data month, metrics and changes."""
        console.job(job_id)  # 404 for an unknown job
        entries = console.timeline(job_id)
        return TimelineOut(
            job_id=job_id, entries=[_entry_out(e) for e in entries], total=len(entries)
        )

    @_post(app, f"{base}/{{job_id}}/cancel", 404, 409)
    def cancel_job(console: ConsoleDep, job_id: Id) -> JobOut:
        """Cancel an unfinished job and stop the batch item working it."""
        return _job_out(console, console.cancel_job(job_id))  # finished: ConflictError -> 409


def _ops_routes(app: FastAPI, registry: CollectorRegistry) -> None:
    @app.get(
        "/healthz",
        response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "the database is unreachable"}},
    )
    def healthz(console: ConsoleDep) -> Any:
        """Whether the database answers a trivial query."""
        try:
            with console.storage.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            detail = str(exc).splitlines()[0]
            return JSONResponse({"status": "fail", "database": detail}, status_code=503)
        return HealthOut(status="ok", database="ok")

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> PlainTextResponse:
        """Monitor, cache, batch and storage figures in the Prometheus text format."""
        return PlainTextResponse(generate_latest(registry).decode())


# --- Prometheus ------------------------------------------------------------------------------


class EngineCollector:
    """Reads the console's monitor, cache, storage and batch runner at scrape time.

    Operation figures cover the monitor's window (``timeWindow`` setting) in
    this process's memory, so they are gauges; cache hits and misses are
    counters since the process started.
    """

    def __init__(self, console: Console) -> None:
        self._console = console

    def collect(self) -> Iterator[Metric]:
        yield from self._operations()
        yield from self._cache()
        yield from self._engine()

    def _operations(self) -> Iterator[Metric]:
        stats = self._console.monitor.stats(source="memory")
        window = GaugeMetricFamily("recon_operation_window_seconds", "Window of the figures")
        window.add_metric([], self._console.settings.monitor.window_ms / 1000)
        calls = GaugeMetricFamily(
            "recon_operation_calls", "Calls in the window", labels=["operation"]
        )
        failures = GaugeMetricFamily(
            "recon_operation_failures", "Failed calls in the window", labels=["operation"]
        )
        latency = GaugeMetricFamily(
            "recon_operation_latency_seconds",
            "Latency quantiles in the window (nearest rank)",
            labels=["operation", "quantile"],
        )
        for s in stats:
            calls.add_metric([s.operation], s.calls)
            failures.add_metric([s.operation], s.failures)
            for q, ms in (("0.5", s.p50_ms), ("0.95", s.p95_ms), ("0.99", s.p99_ms)):
                latency.add_metric([s.operation, q], ms / 1000)
        yield from (window, calls, failures, latency)

    def _cache(self) -> Iterator[Metric]:
        layers = self._console.cache.stats()["layers"]
        hits = CounterMetricFamily("recon_cache_hits", "Cache hits", labels=["layer"])
        misses = CounterMetricFamily("recon_cache_misses", "Cache misses", labels=["layer"])
        evictions = CounterMetricFamily("recon_cache_evictions", "Evictions", labels=["layer"])
        rate = GaugeMetricFamily("recon_cache_hit_rate", "Hits over gets", labels=["layer"])
        size = GaugeMetricFamily("recon_cache_entries", "Entries cached", labels=["layer"])
        for name, layer in layers.items():
            hits.add_metric([name], layer["hits"])
            misses.add_metric([name], layer["misses"])
            evictions.add_metric([name], layer["evictions"])
            size.add_metric([name], layer["size"])
            if layer["hit_rate"] is not None:
                rate.add_metric([name], layer["hit_rate"])
        yield from (hits, misses, evictions, rate, size)

    def _engine(self) -> Iterator[Metric]:
        storage = self._console.storage.cache_stats()
        figures = (
            (CounterMetricFamily, "recon_storage_cache_hits", "Storage cache hits", "hits"),
            (CounterMetricFamily, "recon_storage_cache_misses", "Storage misses", "misses"),
            (GaugeMetricFamily, "recon_storage_pending_writes", "Deferred writes", "pendingWrites"),
        )
        for kind, name, doc, key in figures:
            yield kind(name, doc, value=storage[key])
        batch = self._console.batch
        yield GaugeMetricFamily(
            "recon_batch_queue_depth", "Items waiting to start", value=batch.queue_depth()
        )
        yield GaugeMetricFamily(
            "recon_batch_running", "Items running or waiting to retry", value=batch.running_count()
        )


# --- the app ---------------------------------------------------------------------------------


def create_app(
    console: Console, *, token: str | None = None, max_body_bytes: int = 1_000_000
) -> FastAPI:
    """The API over ``console``.

    Args:
        console: the engine the routes read and drive (not closed by the app).
        token: when set, every POST needs ``Authorization: Bearer <token>``.
        max_body_bytes: larger request bodies get 413.
    """
    app = FastAPI(
        title="Month-end reconciliation console",
        version="1.0",
        description="Month-end close progress, job control and performance figures.",
    )
    app.state.console = console
    app.state.token = token or None
    registry = CollectorRegistry()  # per app: no global state
    registry.register(EngineCollector(console))
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(EngineError, _on_engine_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    _performance_routes(app)
    _job_routes(app)
    _ops_routes(app, registry)
    return app


__all__ = ["EngineCollector", "camel", "create_app"]
