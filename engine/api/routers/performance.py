"""The seed's performance endpoints: statistics, bottlenecks, report, resources, advice, caches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query

from engine.api.convert import bottleneck_out, cache_out, resources_out
from engine.api.deps import (
    DEFAULT_WINDOW_MS,
    PREFIX,
    ApiError,
    ConsoleDep,
    TimeWindow,
    post,
    responses,
)
from engine.api.schemas import (
    BottlenecksOut,
    CacheClearIn,
    CacheClearOut,
    CacheOut,
    RecommendationsOut,
    ReportBodyOut,
    ReportOut,
    ResourcesOut,
    StatsOut,
    view,
)

router = APIRouter(prefix=f"{PREFIX}/performance")


def _levels(levels: Sequence[str]) -> tuple[int, int, int]:
    """How many of ``levels`` are high, medium and low."""
    return levels.count("high"), levels.count("medium"), levels.count("low")


@router.get("/stats", responses=responses(404))
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
            f"No performance data found for operation {operation!r} in the last {time_window} ms",
            "operation",
        )
    return StatsOut(
        stats=found[0] if operation is not None else found,
        time_window_ms=time_window,
        total_operations=len(found),
    )


@router.get("/bottlenecks")
def bottlenecks(console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS) -> BottlenecksOut:
    """Rules that fire over the window, most severe first, with counts per severity."""
    window = time_window / 1000
    by_name = {s.operation: s for s in console.monitor.stats(window)}
    found = [bottleneck_out(b, by_name) for b in console.monitor.bottlenecks(window)]
    high, medium, low = _levels([b.severity for b in found])
    return BottlenecksOut(
        bottlenecks=found,
        time_window_ms=time_window,
        total_bottlenecks=len(found),
        high_severity_count=high,
        medium_severity_count=medium,
        low_severity_count=low,
    )


@router.get("/report")
def report(console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS) -> ReportOut:
    """Summary, top operations, bottlenecks, resource summary and recommendations."""
    window = time_window / 1000
    found = console.monitor.report(window)
    by_name = {s.operation: s for s in console.monitor.stats(window)}
    bottlenecks = [bottleneck_out(b, by_name) for b in found.bottlenecks]
    body = view(ReportBodyOut, found, bottlenecks=bottlenecks)
    return ReportOut(report=body, generated_at=found.generated_at, time_window_ms=time_window)


@router.get("/resources")
def resources(console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS) -> ResourcesOut:
    """Resource samples (process and engine gauges) and their average and peak."""
    return resources_out(console.monitor.resources(time_window / 1000), time_window)


@router.get("/optimization/recommendations")
def recommendations(
    console: ConsoleDep, time_window: TimeWindow = DEFAULT_WINDOW_MS
) -> RecommendationsOut:
    """Advice from the monitor's findings, most urgent first."""
    found = console.monitor.recommendations(time_window / 1000)
    high, medium, low = _levels([a.priority for a in found])
    return RecommendationsOut(
        recommendations=found,
        total_recommendations=len(found),
        high_priority=high,
        medium_priority=medium,
        low_priority=low,
        generated_at=console.clock.now(),
    )


@router.get("/cache")
def cache(console: ConsoleDep) -> CacheOut:
    """The cache service's statistics (total and per layer) and the storage cache's."""
    return CacheOut(
        cache=cache_out(console.cache.stats()),
        storage=console.storage.cache_stats(),
        timestamp=console.clock.now(),
    )


@post(router, "/cache/clear", 400)
def clear_cache(console: ConsoleDep, body: CacheClearIn | None = None) -> CacheClearOut:
    """Empty the cache service (``clearCache``, default) and/or the storage cache."""
    body = body or CacheClearIn()
    cleared_cache = console.cache.clear() if body.clear_cache else 0
    cleared_storage = console.storage.clear_cache() if body.clear_storage else 0
    return CacheClearOut(
        success=True,
        message="Caches cleared successfully",
        cleared_items=int(body.clear_cache) + int(body.clear_storage),
        cache_entries_cleared=cleared_cache,
        storage_entries_cleared=cleared_storage,
        timestamp=console.clock.now(),
    )
