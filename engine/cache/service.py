"""The cache service: the layers behind one thread-safe API (see :mod:`engine.cache`)."""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from time import perf_counter_ns
from typing import Any

from engine.cache.housekeeping import Housekeeper
from engine.cache.layer import Flight, Layer
from engine.cache.prefetch import PrefetchWorker
from engine.cache.stats import CacheSample, CacheStats, collect, history_point
from engine.cache.tuning import CacheConfig, LayerConfig, Replay, retune, simulate
from engine.cache.values import freeze
from engine.clock import Clock, SystemClock
from engine.errors import ConfigError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.readtrace import ReadTrace
from engine.settings import CacheSettings

LAYERS = ("jobs", "timelines", "status", "config", "snapshots")
HISTORY_LEN = 720  # one hour of samples
_TIMING_MASK = 15  # get() times one call in 16: the clock costs as much as a hit


Prefetch = Callable[["CacheService", int], None]
"""Loads a hot job's related entries into the cache it is given (on the prefetch thread)."""


class CacheService:
    """Multi-layer cache with expiry, single-flight loads, prefetching and statistics.

    Args:
        settings: sizes, TTL, prefetch and cleanup settings; every layer starts with them.
        clock: drives expiry, cleanup and sampling (a ``FakeClock`` in tests).
        on_sample: called with each history sample (e.g. to export it).
        prefetch: ``prefetch(cache, job_id)`` loads a hot job's related entries into
            ``cache`` (see :mod:`engine.cache`); None: no prefetching.

    Thread-safe. ``start()`` runs the cleanup and sampling thread; ``close()`` stops it.
    """

    def __init__(
        self,
        settings: CacheSettings,
        *,
        clock: Clock | None = None,
        on_sample: Callable[[CacheSample], None] | None = None,
        instrument: Instrument = NO_INSTRUMENT,
        prefetch: Prefetch | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._now = self._clock.monotonic
        self._on_sample = on_sample
        self._local = threading.local()
        self._layers = {
            name: Layer(
                name, settings, timer=self._now, on_hot=self._hot, in_prefetch=self._in_prefetch
            )
            for name in LAYERS
        }
        self._prefetch = (
            PrefetchWorker(functools.partial(prefetch, self), self._local) if prefetch else None
        )
        self._lock = threading.Lock()  # prefetcher and history
        self._history: deque[CacheSample] = deque(maxlen=HISTORY_LEN)
        self._housekeeper = Housekeeper(
            cleanup=self.cleanup,
            sample=self.sample,
            cleanup_s=settings.cleanup_interval_ms / 1000,
            timer=self._now,
        )
        self._instrument = instrument

    # --- reads and writes ----------------------------------------------------------------------

    def get(self, layer: str, key: Hashable) -> Any:
        """The cached value, or ``None`` if absent or expired."""
        lay = self._layer(layer)
        if next(lay.ticks) & _TIMING_MASK:
            with lay.lock:
                return lay.lookup(key)
        start = perf_counter_ns()
        with lay.lock:
            value = lay.lookup(key)
        self._observe(lay, value is not None, perf_counter_ns() - start)
        return value

    def get_or_load(
        self, layer: str, key: Hashable, loader: Callable[[], Any], *, tags: Iterable[Hashable] = ()
    ) -> Any:
        """The cached value; on a miss ``loader()``'s value, cached (unless ``None``).

        Threads missing the same key together share one loader call (and its
        exception). A write or invalidation during the load keeps its result
        out of the cache. Miss latency includes the load.
        """
        lay = self._layer(layer)
        start = perf_counter_ns()
        with lay.lock:
            value = lay.lookup(key)
            flight, leader = (None, False) if value is not None else lay.join(key, tuple(tags))
        if flight is None:
            self._observe(lay, True, perf_counter_ns() - start)
            return value
        value = self._load(lay, key, flight, loader) if leader else flight.result()
        self._observe(lay, False, perf_counter_ns() - start)
        return value

    def _observe(self, lay: Layer, hit: bool, ns: int) -> None:
        """Count a timed lookup; the monitor sees every miss and one hit in sixteen."""
        (lay.hit_ns if hit else lay.miss_ns).append(ns)  # deque.append is atomic: no lock
        if not hit or not next(lay.ticks) & _TIMING_MASK:
            self._instrument.record("cache.get", ns / 1e9, layer=lay.name, hit=str(hit).lower())

    def _load(self, lay: Layer, key: Hashable, flight: Flight, loader: Callable[[], Any]) -> Any:
        try:
            value = freeze(loader())
        except BaseException as exc:
            with lay.lock:
                lay.land(key, flight)
            flight.set_exception(exc)
            raise
        with lay.lock:
            lay.land(key, flight)
            if value is not None and not flight.stale:
                lay.store(key, lay.entry(key, value, flight.tags, False))
        flight.set_result(value)
        return value

    def set(
        self,
        layer: str,
        key: Hashable,
        value: Any,
        *,
        tags: Iterable[Hashable] = (),
        prefetched: bool = False,
    ) -> None:
        """Cache ``value`` (made immutable, see :func:`freeze`) under ``key``.

        ``tags`` name what the entry depends on, e.g. ``(("job", 17), ("district", "42"))``;
        ``prefetched`` marks an entry loaded ahead of any reader.
        """
        lay = self._layer(layer)
        value = freeze(value)
        if value is None:
            raise TypeError("None cannot be cached: get() returns None for a miss")
        with lay.lock:
            lay.store(key, lay.entry(key, value, tuple(tags), prefetched))

    def invalidate(self, layer: str, key: Hashable) -> bool:
        """Remove one entry; ``True`` if it was cached."""
        lay = self._layer(layer)
        with lay.lock:
            return lay.invalidate(key)

    def invalidate_tag(self, tag: Hashable) -> int:
        """Remove every entry carrying ``tag`` in any layer; the number removed."""
        return _each(self._layers.values(), lambda lay: lay.invalidate_tag(tag))

    def invalidate_job(self, job_id: int) -> int:
        """Remove the job's entry and everything tagged ``("job", job_id)``."""
        return self.invalidate("jobs", job_id) + self.invalidate_tag(("job", job_id))

    def invalidate_district(self, district: str) -> int:
        """Remove everything tagged ``("district", district)``."""
        return self.invalidate_tag(("district", district))

    def clear(self, layer: str | None = None) -> int:
        """Empty one layer or all of them; the number of entries removed."""
        layers = [self._layer(layer)] if layer is not None else self._layers.values()
        return _each(layers, Layer.clear)

    def cleanup(self) -> int:
        """Remove expired entries now; the number removed."""
        return _each(self._layers.values(), Layer.expire)

    def _layer(self, name: str) -> Layer:
        try:
            return self._layers[name]
        except KeyError:
            raise ConfigError(
                "layer", name, f"unknown cache layer; expected one of {', '.join(LAYERS)}"
            ) from None

    # --- prefetching ---------------------------------------------------------------------------

    def _hot(self, job_id: int) -> None:
        worker = self._prefetch
        if worker is not None:
            worker.submit(job_id)

    def _in_prefetch(self) -> bool:
        return bool(getattr(self._local, "prefetching", False))

    # --- statistics ----------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Counters, sizes and latencies (microseconds) per layer and in total."""
        worker = self._prefetch
        return collect(
            self._layers,
            dropped=worker.dropped if worker else 0,
            errors=worker.errors if worker else 0,
        )

    def sample(self) -> CacheSample:
        """Add a point to :meth:`history` (the background thread does it every few seconds)."""
        stats = self.stats()
        with self._lock:
            last = self._history[-1] if self._history else None
            point = history_point(stats, last, self._clock.now())
            self._history.append(point)
        if self._on_sample is not None:
            self._on_sample(point)
        return point

    def history(self) -> list[CacheSample]:
        """Recent samples, oldest first, each with its hit rates per layer and in total."""
        with self._lock:
            return list(self._history)

    # --- tuning --------------------------------------------------------------------------------

    def config(self) -> CacheConfig:
        """Current settings, per layer (the settings' field names)."""
        layers: dict[str, LayerConfig] = {}
        for name, lay in self._layers.items():
            with lay.lock:
                layers[name] = lay.config()
        return CacheConfig(cleanup_interval_ms=self._settings.cleanup_interval_ms, layers=layers)

    def tune(
        self,
        layer: str,
        *,
        max_size: int | None = None,
        ttl_ms: int | None = None,
        policy: str | None = None,
        enable_prefetch: bool | None = None,
        prefetch_threshold: int | None = None,
    ) -> list[str]:
        """Change a layer's settings while it runs, keeping the entries that still fit.

        Out-of-range numbers are clamped (the notes returned say so); invalid
        values raise :class:`ConfigError` naming the field and change nothing.
        """
        lay = self._layer(layer)
        notes: list[str] = []
        change = retune(
            max_size=max_size,
            ttl_ms=ttl_ms,
            policy=policy,
            enable_prefetch=enable_prefetch,
            prefetch_threshold=prefetch_threshold,
            notes=notes,
        )
        with lay.lock:
            lay.retune(change)
        return [f"{layer}: {note}" for note in notes]

    def simulate(
        self, layer: str, sizes: Iterable[int], policies: Iterable[str], ttls: Iterable[int]
    ) -> list[Replay]:
        """Replay the layer's recorded accesses against each size x policy x TTL (ms).

        Replay is read-through: a get that misses loads the key; sets and
        invalidations are replayed as they happened. Returns one row per combination.
        """
        return simulate(self.trace(layer).events(), sizes, policies, ttls)

    def trace(self, layer: str) -> ReadTrace:
        """The layer's recorded accesses (see :mod:`engine.readtrace`)."""
        return self._layer(layer).trace

    # --- background thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that runs :meth:`cleanup` and :meth:`sample` on schedule."""
        self._housekeeper.start()

    def close(self) -> None:
        """Stop the background thread and the prefetcher. The cache stays usable."""
        with self._lock:
            worker, self._prefetch = self._prefetch, None
        self._housekeeper.stop()
        if worker is not None:
            worker.close()


def _each(layers: Iterable[Layer], action: Callable[[Layer], int]) -> int:
    """The sum of ``action`` over ``layers``, each run under its layer's lock."""
    total = 0
    for lay in layers:
        with lay.lock:
            total += action(lay)
    return total
