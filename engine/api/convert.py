"""Engine values to response models, where the API shows more than one engine value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from engine.api.paths import PathRedactor
from engine.api.schemas import (
    MAX_SAMPLES,
    BatchItemOut,
    BatchOut,
    BottleneckOut,
    CacheStatsOut,
    FigureOut,
    JobOut,
    ResourceSampleOut,
    ResourcesOut,
    ResourceSummaryOut,
    camel,
    camel_keys,
    view,
)
from engine.app.console import Console
from engine.batch.runner import BatchDetail, BatchProgress, ItemRecord
from engine.cache import CacheStats
from engine.domain.models import Job
from engine.errors import ConfigError
from engine.monitor.core import Bottleneck, Figure, OperationStats, Resources


def job_out(console: Console, job: Job, redact: PathRedactor) -> Any:
    """A job with its progress and ETA; its error without local paths."""
    progress = console.reconciler.job_progress(job)
    return view(JobOut, job, progress=progress, error=redact.optional(job.error))


def bottleneck_out(
    bottleneck: Bottleneck | Mapping[str, Any], stats: Mapping[str, OperationStats]
) -> Any:
    """A bottleneck with the figures of its operation (``None`` once they left the window)."""
    name = bottleneck["operation"] if isinstance(bottleneck, Mapping) else bottleneck.operation
    return view(BottleneckOut, bottleneck, stats=stats.get(name))


def resources_out(found: Resources, time_window_ms: int) -> ResourcesOut:
    """The monitor's samples (the latest :data:`MAX_SAMPLES`) and their summary."""
    return ResourcesOut(
        metrics=[sample_out(s.as_dict()) for s in found.samples[-MAX_SAMPLES:]],
        summary=resource_summary(found.summary, found.count),
        time_window_ms=time_window_ms,
        data_points=found.count,
        source=found.source,
    )


def resource_summary(summary: Mapping[str, Figure], count: int) -> ResourceSummaryOut:
    """Memory and CPU under the seed's names, and every figure's average and peak."""

    def figure(name: str, key: str) -> float | None:
        found = summary.get(name)
        return None if found is None else float(getattr(found, key))

    return ResourceSummaryOut(
        average_memory_mb=figure("rss_mb", "avg"),
        peak_memory_mb=figure("rss_mb", "peak"),
        average_cpu_percent=figure("cpu_percent", "avg"),
        peak_cpu_percent=figure("cpu_percent", "peak"),
        data_points=count,
        figures={camel(k): FigureOut.model_validate(v) for k, v in summary.items()},
    )


def sample_out(sample: Mapping[str, Any]) -> ResourceSampleOut:
    """One resource sample: the seed's three figures and every figure by name."""
    figures = {k: float(v) for k, v in sample.items() if k not in ("at", "process")}
    at: datetime = sample["at"]
    return ResourceSampleOut(
        timestamp=round(at.timestamp() * 1000),
        process=sample["process"],
        memory_usage_mb=figures.get("rss_mb", 0.0),
        cpu_usage_percent=figures.get("cpu_percent", 0.0),
        cache_hit_rate=figures.get("cache_hit_rate"),
        figures=camel_keys(figures),
    )


def cache_out(stats: CacheStats) -> Any:
    """The cache service's totals with its layers."""
    return view(CacheStatsOut, stats.total, layers=stats.layers)


def batch_out(console: Console, detail: BatchDetail, redact: PathRedactor) -> Any:
    """A batch with its items, their attempts and (batches of this process) live progress;
    errors without local paths."""
    info = detail.info
    return view(
        BatchOut,
        info,
        done=info.status.finished,
        progress=_progress(console, info.batch_id),
        items=[_item_out(item, redact) for item in detail.items],
    )


def _progress(console: Console, batch_id: int) -> BatchProgress | None:
    try:
        return console.batch.progress(batch_id)
    except ConfigError:
        return None  # a batch of another process: its stored counts are all there is


def _item_out(item: ItemRecord, redact: PathRedactor) -> Any:
    spec = item.spec
    return view(
        BatchItemOut,
        item,
        error=redact.optional(item.error),
        attempts=[replace(a, error=redact.optional(a.error)) for a in item.attempts],
        job_id=spec.get("job_id"),
        district_id=spec.get("district"),
        target_month=spec.get("month"),
    )
