"""The API's request and response models: the engine's values under the seed's JSON names.

One rule names every JSON field: :func:`camel` turns the snake_case name of a
model field into camelCase (``share_of_time`` -> ``shareOfTime``; a few seed
spellings such as ``memoryUsageMB`` are listed in :data:`SEED_NAMES`).

Response models of engine dataclasses are *derived* with :func:`derive`: the
fields and their types come from the dataclass. Where the seed named a field
differently, ``rename`` gives the seed's name in snake_case (the rule makes it
camelCase) and the model reads the engine's attribute under its own name;
``omit`` leaves out what the API never showed, ``types`` changes how a field
is shown, ``add`` adds what the API shows beside the dataclass's fields
(properties of the value, or values the route supplies through :func:`view`).
When an engine field is renamed or changes type, the matching entry here is
the one line to change.

Every engine result the API shows is a dataclass and derived here; what is
declared by hand are the requests and the envelopes (``...Out`` models whose
fields are the route's: counts, the window, a timestamp) around derived models.

In annotations a derived model is written ``Annotated[EngineType, As(Model)]``: the
engine type for the type checker, the model for pydantic's schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    create_model,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema

from engine.app.months import MonthStatus
from engine.app.queries import WatcherView, WorkerView
from engine.batch.runner import AttemptRecord, BatchInfo, BatchProgress, ItemRecord
from engine.cache import CacheTotals, LayerStats
from engine.clock import as_utc
from engine.domain.models import Job, MetricChange, TimelineEntry, validate_month
from engine.domain.rules import JobProgress
from engine.errors import ConfigError
from engine.monitor.core import (
    Bottleneck,
    Figure,
    OperationStats,
    Recommendation,
    Report,
    ReportSummary,
    ResourceSample,
    ResourceSummary,
)
from engine.reconcile import MonthProgress
from engine.settings import BatchSettings
from engine.store.storage import StorageCacheStats

MAX_JOBS = 1_000
"""Jobs (districts) one request may start."""
MAX_SAMPLES = 1_000
"""Resource samples one response carries (the latest); ``dataPoints`` counts them all."""

SEED_NAMES: dict[str, str] = {
    "memory_usage_mb": "memoryUsageMB",
    "average_memory_mb": "averageMemoryMB",
    "peak_memory_mb": "peakMemoryMB",
    **{f.name: f.metadata["seed"] for f in dataclasses.fields(BatchSettings)},
}
"""Names the seed spelled differently from plain camelCase."""


def camel(name: str) -> str:
    """The alias rule: ``share_of_time`` -> ``shareOfTime``; names without underscores stay."""
    if name in SEED_NAMES:
        return SEED_NAMES[name]
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping with engine names as keys (metrics, figures, settings) under the rule."""
    return {camel(k): v for k, v in values.items()}


Timestamp = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime that always carries its offset (RFC 3339 ``date-time``)."""


def epoch_ms(at: datetime) -> int:
    """A datetime as the seed's timestamps: milliseconds since the epoch."""
    return round(at.timestamp() * 1000)


CamelFloats = Annotated[dict[str, float], BeforeValidator(camel_keys)]
CamelValues = Annotated[dict[str, Any], BeforeValidator(camel_keys)]
Level = Literal["high", "medium", "low"]


# --- the base models ---------------------------------------------------------------------------


class In(BaseModel):
    """A request body: camelCase names only, nothing else."""

    model_config = ConfigDict(alias_generator=camel, extra="forbid")


class Out(BaseModel):
    """A response: camelCase names; built from keyword arguments, mappings or engine objects."""

    model_config = ConfigDict(
        alias_generator=camel,
        validate_by_name=True,
        validate_by_alias=True,
        from_attributes=True,
        # Answers carry every field, defaults too (engine dataclasses such as BatchSettings).
        json_schema_serialization_defaults_required=True,
    )


def derive(
    source: type,
    *,
    name: str,
    rename: Mapping[str, str] | None = None,
    omit: Iterable[str] = (),
    types: Mapping[str, Any] | None = None,
    add: Mapping[str, Any] | None = None,
) -> type[Out]:
    """A response model with the fields of the dataclass ``source``.

    Args:
        source: the engine dataclass; its docstring documents the model.
        name: the model's name in the OpenAPI document.
        rename: engine field -> the seed's name for it, in snake_case.
        omit: engine fields the API does not show.
        types: engine field -> the type it is shown as (or ``(type, Field(...))``).
        add: more fields, ``name -> type`` (or ``(type, Field(...))``), read from the
            value's attributes (properties) or given to :func:`view`.
    """
    rename, types = rename or {}, types or {}
    hints = get_type_hints(source)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(source):
        if f.name in omit:
            continue
        shown, info = _field_spec(types.get(f.name, _shown(hints[f.name])))
        if f.name in rename:  # the seed's name outside, the engine's attribute read
            info = FieldInfo.merge_field_infos(info, validation_alias=f.name)
        fields[rename.get(f.name, f.name)] = (shown, info)
    for extra, spec in (add or {}).items():
        fields[extra] = _field_spec(spec)
    model: type[Out] = create_model(name, __base__=Out, __doc__=source.__doc__, **fields)
    return model


def _field_spec(spec: Any) -> tuple[Any, FieldInfo]:
    """``(type, FieldInfo)`` of a required field: every answer carries every field."""
    if isinstance(spec, tuple):
        return spec[0], spec[1]
    return spec, Field()


def _shown(hint: Any) -> Any:
    """How an engine type is shown: datetimes always with their offset."""
    if hint is datetime:
        return Timestamp
    if hint == datetime | None:
        return Timestamp | None
    return hint


@dataclasses.dataclass(frozen=True)
class As:
    """Annotation metadata: pydantic shows the annotated engine type as ``model``.

    ``Annotated[Job, As(JobOut)]`` is a ``Job`` to the type checker and a
    ``JobOut`` in the schema; the engine value is validated from its attributes.
    """

    model: type[BaseModel]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return handler(self.model)


def view(model: type[Out], value: object, **extra: Any) -> Any:
    """``model`` from an engine value (a dataclass or a mapping) and ``extra`` fields."""
    if isinstance(value, Mapping):
        return model.model_validate({**value, **extra})
    return model.model_validate(_With(value, extra))


class _With:
    """An engine value with a few more attributes, for validation from attributes."""

    def __init__(self, value: object, extra: Mapping[str, Any]) -> None:
        self._value = value
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        if name in self._extra:
            return self._extra[name]
        return getattr(self._value, name)


# --- requests ----------------------------------------------------------------------------------


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


def patch_of(source: type, *, name: str, doc: str) -> type[In]:
    """A request model with every field of the dataclass ``source``, each optional."""
    hints = get_type_hints(source)
    fields: dict[str, Any] = {
        f.name: (hints[f.name] | None, None) for f in dataclasses.fields(source)
    }
    model: type[In] = create_model(name, __base__=In, __doc__=doc, **fields)
    return model


BatchConfigIn = patch_of(
    BatchSettings,
    name="BatchConfigIn",
    doc="Batch settings with the seed's names; values outside their range are clamped.",
)
BatchConfig = Annotated[In, As(BatchConfigIn)]


class BatchJobIn(In):
    district_id: District
    target_month: Month
    priority: Priority = 0


class BatchProcessIn(In):
    jobs: list[BatchJobIn] = Field(min_length=1, max_length=MAX_JOBS)
    config: BatchConfig | None = None


class StartJobsIn(In):
    target_month: Month
    district_ids: list[District] | None = Field(
        None, min_length=1, max_length=MAX_JOBS, description="default: every published district"
    )
    priority: Priority = 0
    config: BatchConfig | None = None


class CacheClearIn(In):
    clear_cache: bool = True
    clear_storage: bool = False


# --- engine values, derived --------------------------------------------------------------------

OperationStatsOut = derive(
    OperationStats,
    name="OperationStatsOut",
    rename={
        "operation": "operation_name",
        "calls": "total_calls",
        "successes": "successful_calls",
        "failures": "failed_calls",
        "mean_ms": "average_duration",
        "min_ms": "min_duration",
        "max_ms": "max_duration",
        "p50_ms": "p50_duration",
        "p95_ms": "p95_duration",
        "p99_ms": "p99_duration",
        "total_ms": "total_duration",
    },
    types={"errors": (dict[str, int], Field(description="failures by error type"))},
)
BottleneckOut = derive(
    Bottleneck,
    name="BottleneckOut",
    rename={"operation": "operation_name", "message": "issue"},
    types={"values": (CamelFloats, Field(description="the numbers that made the rule fire"))},
    add={"stats": Annotated[OperationStats, As(OperationStatsOut)] | None},
)
RecommendationOut = derive(
    Recommendation,
    name="RecommendationOut",
    rename={"message": "recommendation"},
    types={"values": CamelFloats},
)
ChangeOut = derive(
    MetricChange,
    name="ChangeOut",
    types={"metric": Annotated[str, AfterValidator(camel)]},
    add={
        "delta": float,
        "pct": (float | None, Field(description="relative change in percent; null from 0")),
    },
)
TimelineEntryOut = derive(
    TimelineEntry,
    name="TimelineEntryOut",
    omit=("job_id",),
    types={"metrics": CamelFloats, "changes": list[Annotated[MetricChange, As(ChangeOut)]]},
)
JobOut = derive(
    Job,
    name="JobOut",
    rename={"district": "district_id", "month": "target_month"},
    omit=("last_significant_as_of", "significant_dates"),
    add={"progress": JobProgress},
)
MonthProgressOut = derive(MonthProgress, name="MonthProgressOut", omit=("month",))
AttemptOut = derive(AttemptRecord, name="AttemptOut")
BatchItemOut = derive(
    ItemRecord,
    name="BatchItemOut",
    omit=("spec",),
    types={
        "status": str,  # the seed's plain string, whatever type the engine gives it
        "result": Annotated[
            dict[str, Any] | None, BeforeValidator(lambda r: r if isinstance(r, dict) else None)
        ],
        "attempts": list[Annotated[AttemptRecord, As(AttemptOut)]],
    },
    add={"job_id": int | None, "district_id": str | None, "target_month": str | None},
)
BatchProgressOut = derive(
    BatchProgress,
    name="BatchProgressOut",
    rename={
        "throughput": "throughput_per_second",
        "eta_s": "eta_seconds",
        "elapsed_s": "elapsed_seconds",
        "throttled_s": "throttled_seconds",
    },
    omit=("batch_id", "total", "done"),
)
CacheLayerOut = derive(LayerStats, name="CacheLayerOut")
CacheStatsOut = derive(
    CacheTotals,
    name="CacheStatsOut",
    rename={"hits": "total_hits", "misses": "total_misses"},
    add={"layers": dict[str, Annotated[LayerStats, As(CacheLayerOut)]]},
)
BatchOut = derive(
    BatchInfo,
    name="BatchOut",
    omit=("throttled_s",),
    types={
        "status": (str, Field(description="running, finished, cancelled or interrupted")),
        "config": CamelValues,
    },
    add={
        "done": bool,
        "progress": (
            Annotated[BatchProgress, As(BatchProgressOut)] | None,
            Field(description="live figures (batches of this process)"),
        ),
        "items": list[Annotated[ItemRecord, As(BatchItemOut)]],
    },
)


StorageCacheOut = derive(StorageCacheStats, name="StorageCacheOut")
ReportSummaryOut = derive(
    ReportSummary,
    name="ReportSummaryOut",
    rename={
        "distinct_operations": "unique_operations",
        "success_rate": "overall_success_rate",
        "mean_response_ms": "average_response_time",
    },
    types={"mean_response_ms": (float | None, Field(description="milliseconds"))},
)
FigureOut = derive(Figure, name="FigureOut")
ResourceSummaryOut = derive(
    ResourceSummary,
    name="ResourceSummaryOut",
    rename={"count": "data_points", "summary": "figures"},
    omit=("source",),
    types={
        "summary": (
            Annotated[dict[str, Annotated[Figure, As(FigureOut)]], BeforeValidator(camel_keys)],
            Field(description="every resource figure and engine gauge"),
        )
    },
    add={
        "average_memory_mb": float | None,
        "peak_memory_mb": float | None,
        "average_cpu_percent": float | None,
        "peak_cpu_percent": float | None,
    },
)
ResourceSampleOut = derive(
    ResourceSample,
    name="ResourceSampleOut",
    rename={"at": "timestamp", "values": "figures"},
    types={
        "at": (
            Annotated[int, BeforeValidator(epoch_ms)],
            Field(description="milliseconds since the epoch"),
        ),
        "values": CamelFloats,
    },
    add={"memory_usage_mb": float, "cpu_usage_percent": float, "cache_hit_rate": float | None},
)


# --- envelopes ---------------------------------------------------------------------------------

OperationStatsJson = Annotated[OperationStats, As(OperationStatsOut)]
BottleneckJson = Annotated[Bottleneck, As(BottleneckOut)]
RecommendationJson = Annotated[Recommendation, As(RecommendationOut)]
ResourceSummaryJson = Annotated[ResourceSummary, As(ResourceSummaryOut)]

ReportBodyOut = derive(
    Report,
    name="ReportBodyOut",
    rename={"resources": "resource_summary"},
    omit=("window_s", "generated_at"),
    types={
        "summary": Annotated[ReportSummary, As(ReportSummaryOut)],
        "top_operations": list[OperationStatsJson],
        "bottlenecks": list[BottleneckJson],
        "resources": ResourceSummaryJson,
        "recommendations": list[RecommendationJson],
    },
)


class ErrorOut(Out):
    error: str
    field: str | None = None


class StatsOut(Out):
    stats: OperationStatsJson | list[OperationStatsJson] = Field(
        description="one operation's figures when `operation` is given, else every operation's"
    )
    time_window_ms: int
    total_operations: int


class BottlenecksOut(Out):
    bottlenecks: list[BottleneckJson]
    time_window_ms: int
    total_bottlenecks: int
    high_severity_count: int
    medium_severity_count: int
    low_severity_count: int


class RecommendationsOut(Out):
    recommendations: list[RecommendationJson]
    total_recommendations: int
    high_priority: int
    medium_priority: int
    low_priority: int
    generated_at: Timestamp


class ResourcesOut(Out):
    metrics: list[Annotated[Out, As(ResourceSampleOut)]] = Field(
        description=f"the latest {MAX_SAMPLES} at most"
    )
    summary: ResourceSummaryJson
    time_window_ms: int
    data_points: int
    source: str = Field(description="memory (this process) or history (every process)")


class ReportOut(Out):
    report: Annotated[Out, As(ReportBodyOut)]
    generated_at: Timestamp
    time_window_ms: int


class CacheOut(Out):
    cache: Annotated[Out, As(CacheStatsOut)]
    storage: Annotated[StorageCacheStats, As(StorageCacheOut)]
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


class JobsOut(Out):
    target_month: str
    jobs: list[Annotated[Job, As(JobOut)]]
    total: int
    progress: Annotated[MonthProgress, As(MonthProgressOut)]
    month_status: MonthStatus = Field(
        description="where the month's close stands (as `recon status` and the dashboard say)"
    )


class TimelineOut(Out):
    job_id: int
    entries: list[Annotated[TimelineEntry, As(TimelineEntryOut)]]
    total: int


WatcherOut = derive(WatcherView, name="WatcherOut", add={"summary": str})

WorkerOut = derive(WorkerView, name="WorkerOut", types={"state": Literal["alive", "lost"]})


class WorkersOut(Out):
    workers: list[Annotated[WorkerView, As(WorkerOut)]]
    total: int
    alive: int


class HealthOut(Out):
    status: Literal["ok", "fail"]
    database: str
    watcher: WatcherOut | None = None  # type: ignore[valid-type]
    """The database's watcher (``recon watch``); absent when the database is unreachable."""


__all__ = ["SEED_NAMES", "As", "In", "Out", "camel", "camel_keys", "derive", "patch_of", "view"]
