"""Counters and latencies of the layers, summed, and the points of the hit-rate history."""

from __future__ import annotations

from collections.abc import Mapping
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
_SAMPLE_FIELDS = ("hits", "misses", "hit_rate", "evictions", "expirations", "prefetch_hits", "size")


def collect(layers: Mapping[str, Layer], *, dropped: int, errors: int) -> dict[str, Any]:
    """Counters, sizes and latencies (microseconds) per layer and in total.

    ``dropped`` and ``errors`` are the prefetcher's, reported in the total.
    """
    per_layer: dict[str, dict[str, Any]] = {}
    hit_ns: list[int] = []
    miss_ns: list[int] = []
    for name, lay in layers.items():
        with lay.lock:
            per_layer[name] = lay.counters()
            hits, misses = list(lay.hit_ns), list(lay.miss_ns)
        per_layer[name].update(_latency("hit", hits) | _latency("miss", misses))
        hit_ns += hits
        miss_ns += misses
    total: dict[str, Any] = {k: sum(s[k] for s in per_layer.values()) for k in COUNTERS}
    total["hit_rate"] = ratio(total["hits"], total["hits"] + total["misses"])
    total.update(_latency("hit", hit_ns) | _latency("miss", miss_ns))
    total["prefetch_dropped"] = dropped
    total["prefetch_errors"] = errors
    return {"layers": per_layer, "total": total}


def history_point(stats: dict[str, Any], last: dict[str, Any], time: str) -> dict[str, Any]:
    """A history sample at ``time``: ``stats``' rates, and the hit rate since ``last``."""
    point: dict[str, Any] = {"time": time}
    for name, s in {**stats["layers"], "total": stats["total"]}.items():
        hits = s["hits"] - last.get(name, {}).get("hits", 0)
        misses = s["misses"] - last.get(name, {}).get("misses", 0)
        point[name] = {f: s[f] for f in _SAMPLE_FIELDS}
        point[name]["interval_hit_rate"] = ratio(hits, hits + misses)
    return point


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _latency(prefix: str, samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {f"{prefix}_mean_us": 0.0, f"{prefix}_p95_us": 0.0}
    ordered = sorted(samples_ns)
    return {
        f"{prefix}_mean_us": sum(ordered) / len(ordered) / 1000,
        f"{prefix}_p95_us": ordered[int(0.95 * (len(ordered) - 1))] / 1000,
    }
