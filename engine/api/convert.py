"""Engine values to response models, where the API shows more than one engine value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.api.paths import PathRedactor
from engine.api.schemas import (
    MAX_SAMPLES,
    BatchItemOut,
    BatchOut,
    BottleneckOut,
    CacheStatsOut,
    JobOut,
    ResourceSampleOut,
    ResourcesOut,
    view,
)
from engine.app.console import Console
from engine.batch.runner import BatchDetail, BatchProgress, ItemRecord
from engine.cache import CacheStats
from engine.domain.models import Job
from engine.errors import ConfigError
from engine.monitor.core import Bottleneck, OperationStats, Resources, ResourceSample


def job_out(console: Console, job: Job, redact: PathRedactor) -> Any:
    """A job with its progress and ETA; its error without local paths."""
    progress = console.reconciler.job_progress(job)
    return view(JobOut, job, progress=progress, error=redact.optional(job.error))


def bottleneck_out(bottleneck: Bottleneck, stats: Mapping[str, OperationStats]) -> Any:
    """A bottleneck with the figures of its operation (``None`` once they left the window)."""
    return view(BottleneckOut, bottleneck, stats=stats.get(bottleneck.operation))


def resources_out(found: Resources, time_window_ms: int) -> ResourcesOut:
    """The monitor's samples (the latest :data:`MAX_SAMPLES`) and their summary."""
    return ResourcesOut(
        metrics=[sample_out(s) for s in found.samples[-MAX_SAMPLES:]],
        summary=found.summed_up,
        time_window_ms=time_window_ms,
        data_points=found.count,
        source=found.source,
    )


def sample_out(sample: ResourceSample) -> Any:
    """One resource sample: every figure by name, and the seed's three beside them."""
    values = sample.values
    return view(
        ResourceSampleOut,
        sample,
        memory_usage_mb=values.get("rss_mb", 0.0),
        cpu_usage_percent=values.get("cpu_percent", 0.0),
        cache_hit_rate=values.get("cache_hit_rate"),
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
