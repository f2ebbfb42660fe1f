"""The Prometheus collector: the console's figures, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.app import queries
from engine.app.console import Console


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
        yield from self._storage()
        yield from self._batch()
        yield from self._watcher()

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
        layers = self._console.cache.stats().layers
        hits = CounterMetricFamily("recon_cache_hits", "Cache hits", labels=["layer"])
        misses = CounterMetricFamily("recon_cache_misses", "Cache misses", labels=["layer"])
        evictions = CounterMetricFamily("recon_cache_evictions", "Evictions", labels=["layer"])
        rate = GaugeMetricFamily("recon_cache_hit_rate", "Hits over gets", labels=["layer"])
        size = GaugeMetricFamily("recon_cache_entries", "Entries cached", labels=["layer"])
        for name, layer in layers.items():
            hits.add_metric([name], layer.hits)
            misses.add_metric([name], layer.misses)
            evictions.add_metric([name], layer.evictions)
            size.add_metric([name], layer.size)
            if layer.hit_rate is not None:
                rate.add_metric([name], layer.hit_rate)
        yield from (hits, misses, evictions, rate, size)

    def _storage(self) -> Iterator[Metric]:
        storage = self._console.storage.cache_stats()
        yield CounterMetricFamily(
            "recon_storage_cache_hits", "Storage cache hits", value=storage.hits
        )
        yield CounterMetricFamily(
            "recon_storage_cache_misses", "Storage misses", value=storage.misses
        )
        yield GaugeMetricFamily(
            "recon_storage_pending_writes", "Deferred writes", value=storage.pending_writes
        )

    def _batch(self) -> Iterator[Metric]:
        batch = self._console.batch
        yield GaugeMetricFamily(
            "recon_batch_queue_depth", "Items waiting to start", value=batch.queue_depth()
        )
        yield GaugeMetricFamily(
            "recon_batch_running", "Items running or waiting to retry", value=batch.running_count()
        )

    def _watcher(self) -> Iterator[Metric]:
        watcher = queries.watcher_view(self._console)
        yield GaugeMetricFamily(
            "recon_watcher_running", "1 while a watcher holds the lease", value=watcher.running
        )
        last = watcher.last_tick_at.timestamp() if watcher.last_tick_at else 0.0
        yield GaugeMetricFamily(
            "recon_watcher_last_tick_timestamp_seconds", "The watcher's last tick", value=last
        )
        yield GaugeMetricFamily(
            "recon_watcher_open_jobs", "Open jobs after the last tick", value=watcher.open_jobs
        )


def registry_for(console: Console) -> CollectorRegistry:
    """A registry of its own (nothing global) with the console's collector."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(console))
    return registry
