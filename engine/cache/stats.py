"""Counters and latencies of the layers, summed, and the points of the hit-rate history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.cache.layer import Layer

COUNTERS = (
    "hits",
    "misses",
    "evictions",
    "expirations",
    "prefetches",
    "prefetch_hits",
    "size",
    "max_size",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerStats:
    """One cache layer's figures: counts since the start, sizes in entries, latencies in
    microseconds (mean and 95th percentile of the last 1,024 timed gets of each kind)."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    prefetches: int
    """Entries written by the prefetcher."""
    prefetch_hits: int
    """First reads of prefetched entries."""
    size: int
    """Entries held now."""
    max_size: int
    hit_rate: float | None
    """Hits over reads (0 to 1); None before the first read."""
    hit_mean_us: float
    hit_p95_us: float
    miss_mean_us: float
    miss_p95_us: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheTotals(LayerStats):
    """Every layer's figures summed (latencies over every layer's timed gets), and the
    prefetcher's requests dropped (queue full) and failed."""

    prefetch_dropped: int
    prefetch_errors: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """The cache service's figures: per layer, by name, and in total."""

    layers: dict[str, LayerStats]
    total: CacheTotals


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleFigures:
    """One layer's (or the total's) figures in a history sample: counts since the start,
    size in entries, hit rates as fractions (0 to 1)."""

    hits: int
    misses: int
    hit_rate: float | None
    """Hits over reads since the start; None before the first read."""
    evictions: int
    expirations: int
    prefetch_hits: int
    size: int
    """Entries held at the sample."""
    interval_hit_rate: float | None
    """Hits over reads since the previous sample; None without reads in between."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSample:
    """A point of the cache's hit-rate history: per layer, by name, and in total."""

    time: datetime
    """When it was taken (the cache's clock)."""
    layers: dict[str, SampleFigures]
    total: SampleFigures


def collect(layers: Mapping[str, Layer], *, dropped: int, errors: int) -> CacheStats:
    """Counters, sizes and latencies (microseconds) per layer and in total.

    ``dropped`` and ``errors`` are the prefetcher's, reported in the total.
    """
    per_layer: dict[str, LayerStats] = {}
    hit_ns: list[int] = []
    miss_ns: list[int] = []
    for name, lay in layers.items():
        with lay.lock:
            counts = lay.counters()
            hits, misses = list(lay.hit_ns), list(lay.miss_ns)
        per_layer[name] = LayerStats(**counts, **_latencies(hits, misses))
        hit_ns += hits
        miss_ns += misses
    sums = {k: sum(getattr(s, k) for s in per_layer.values()) for k in COUNTERS}
    total = CacheTotals(
        **sums,
        hit_rate=ratio(sums["hits"], sums["hits"] + sums["misses"]),
        **_latencies(hit_ns, miss_ns),
        prefetch_dropped=dropped,
        prefetch_errors=errors,
    )
    return CacheStats(layers=per_layer, total=total)


def history_point(stats: CacheStats, last: CacheSample | None, time: datetime) -> CacheSample:
    """A history sample at ``time``: ``stats``' rates, and the hit rate since ``last``."""
    before = {} if last is None else {**last.layers, "total": last.total}
    layers = {name: _figures(s, before.get(name)) for name, s in stats.layers.items()}
    return CacheSample(time=time, layers=layers, total=_figures(stats.total, before.get("total")))


_SAMPLED = tuple(f.name for f in fields(SampleFigures) if f.name != "interval_hit_rate")
"""The figures a sample takes as they are from the layer's (or the total's) stats."""


def _figures(now: LayerStats, last: SampleFigures | None) -> SampleFigures:
    hits = now.hits - (last.hits if last else 0)
    misses = now.misses - (last.misses if last else 0)
    kept = {name: getattr(now, name) for name in _SAMPLED}
    return SampleFigures(**kept, interval_hit_rate=ratio(hits, hits + misses))


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _latencies(hit_ns: list[int], miss_ns: list[int]) -> dict[str, Any]:
    """``hit_mean_us``, ``hit_p95_us``, ``miss_mean_us`` and ``miss_p95_us`` of the samples."""
    (hit_mean, hit_p95), (miss_mean, miss_p95) = _mean_p95_us(hit_ns), _mean_p95_us(miss_ns)
    return {
        "hit_mean_us": hit_mean,
        "hit_p95_us": hit_p95,
        "miss_mean_us": miss_mean,
        "miss_p95_us": miss_p95,
    }


def _mean_p95_us(samples_ns: list[int]) -> tuple[float, float]:
    if not samples_ns:
        return 0.0, 0.0
    ordered = sorted(samples_ns)
    rank = -(-95 * len(ordered) // 100)  # nearest rank, as the monitor's percentiles
    return sum(ordered) / len(ordered) / 1000, ordered[rank - 1] / 1000
