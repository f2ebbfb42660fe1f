"""The cache service: bounded, expiring, thread-safe layers in front of storage.

Layers (``LAYERS``): ``jobs``, ``timelines``, ``status``, ``config`` and
``snapshots``. Each is a cachetools cache guarded by its own lock (cachetools'
classes are not thread-safe), bounded by ``maxSize`` and expiring entries
``ttlMs`` after they were written. A full layer evicts; it never stops caching.

Eviction policies (``POLICIES``):

- ``LRU`` (default), ``LFU``, ``FIFO``: evict by recency, use count or age;
  expired entries are dropped when read and by :meth:`CacheService.cleanup`.
- ``TTL-LRU``: cachetools' ``TLRUCache``; expired entries go first when the
  layer is full, then the least recently used.

Values are immutable: frozen dataclasses, tuples, strings and numbers are
stored as they are; lists, dicts and sets are copied into tuples,
read-only mappings and frozensets; anything else is refused with ``TypeError``.
``None`` cannot be cached: :meth:`CacheService.get` returns ``None`` for a miss.

Tags let writes invalidate what they change: ``set("timelines", 17, entries,
tags=(("job", 17), ("district", "42")))`` is removed by ``invalidate_job(17)``
and by ``invalidate_district("42")``. Job ids are ints.

Prefetching: the owner registers ``set_prefetcher(fn)``. When an entry of a
job (a ``jobs`` key, or an entry tagged ``("job", id)``) has been read
``prefetchThreshold`` times, ``fn(job_id)`` runs on one background thread fed
by a bounded queue (a full queue drops the request and counts it). Entries
written while ``fn`` runs, or with ``set(..., prefetched=True)``, are counted
as prefetches, and their first later read as a prefetch hit.

Every get, set and invalidation is recorded in a bounded trace per layer;
:meth:`CacheService.simulate` replays it against other sizes, policies and TTLs.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future
from datetime import date, time, timedelta
from decimal import Decimal
from enum import Enum
from time import perf_counter_ns
from types import MappingProxyType
from typing import Any

from cachetools import Cache, FIFOCache, LFUCache, LRUCache, TLRUCache

from engine.clock import Clock, SystemClock
from engine.errors import ConfigError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.settings import CacheSettings, clamp

LAYERS = ("jobs", "timelines", "status", "config", "snapshots")
POLICIES = ("LRU", "LFU", "FIFO", "TTL-LRU")
SAMPLE_INTERVAL_S = 5.0  # history() gets one sample this often
HISTORY_LEN = 720  # one hour of samples
TRACE_LEN = 10_000  # recorded accesses per layer, replayed by simulate()
PREFETCH_QUEUE = 32  # pending prefetches; more are dropped, so storage is never flooded
_LATENCY_WINDOW = 1024  # recent latency samples kept per layer
_TIMING_MASK = 15  # get() times one call in 16: the clock costs as much as a hit
_POLL_S = 0.5  # the background thread looks at the clock this often

log = logging.getLogger(__name__)

Tags = tuple[Hashable, ...]
_SEED = {f.name: f.metadata["seed"] for f in dataclasses.fields(CacheSettings)}
# datetime and bool are covered as subclasses of date and int
_SCALARS = (str, bytes, int, float, complex, type(None), Decimal, Enum, date, time, timedelta)
_COUNTERS = (
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


def freeze(value: Any) -> Any:
    """``value`` itself if immutable, else an immutable copy; ``TypeError`` if impossible."""
    if isinstance(value, _SCALARS) or _is_frozen_dataclass(value):
        return value
    if isinstance(value, tuple | list):
        items = tuple(freeze(v) for v in value)
        same = isinstance(value, tuple) and all(a is b for a, b in zip(items, value, strict=True))
        return value if same else items
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    raise TypeError(
        f"cannot cache a {type(value).__name__}: use a frozen dataclass, tuple, mapping or scalar"
    )


def _is_frozen_dataclass(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)


@dataclasses.dataclass(slots=True, eq=False)
class _Entry:
    """A cached value and what the layer needs to know about it."""

    value: Any
    inserted: float
    tags: Tags = ()
    job: int | None = None  # the job whose reads count towards a prefetch
    prefetched: bool = False  # until its first read
    reads: int = 0


_Hook = Callable[[Hashable, _Entry, bool], None]  # key, entry, whether it expired


def _ignore(key: Hashable, entry: _Entry, expired: bool) -> None:
    """Hook while a layer is rebuilt or replayed: nothing to report."""


class _Hooked(Cache[Hashable, _Entry]):
    """Reports evictions, so the layer's counters and tag index follow them."""

    on_drop: _Hook

    def popitem(self) -> tuple[Hashable, _Entry]:
        key, entry = super().popitem()
        self.on_drop(key, entry, False)
        return key, entry


class _LRU(_Hooked, LRUCache[Hashable, _Entry]):
    pass


class _LFU(_Hooked, LFUCache[Hashable, _Entry]):
    pass


class _FIFO(_Hooked, FIFOCache[Hashable, _Entry]):
    pass


class _TLRU(_Hooked, TLRUCache[Hashable, _Entry]):
    """Also reports the expiries cachetools does on its own (on every write)."""

    def expire(self, time: float | None = None) -> list[tuple[Hashable, _Entry]]:
        expired = super().expire(time)
        for key, entry in expired:
            self.on_drop(key, entry, True)
        return expired


def _new_cache(
    policy: str, size: int, ttl_s: float, timer: Callable[[], float], on_drop: _Hook = _ignore
) -> _Hooked:
    cache: _Hooked
    if policy == "TTL-LRU":
        cache = _TLRU(size, lambda _key, entry, _now: entry.inserted + ttl_s, timer)
    else:
        cache = {"LRU": _LRU, "LFU": _LFU, "FIFO": _FIFO}[policy](size)
    cache.on_drop = on_drop
    return cache


def _pop(cache: _Hooked, key: Hashable) -> _Entry | None:
    try:
        return cache.pop(key, None)
    except KeyError:  # TTL-LRU: the entry expired between cachetools' check and its delete
        return None


def _drain(cache: _Hooked) -> list[tuple[Hashable, _Entry]]:
    """Empty ``cache`` least valuable entry first, without reporting evictions."""
    cache.on_drop = _ignore
    items = []
    while True:
        try:
            items.append(cache.popitem())
        except KeyError:
            return items


class _Flight(Future[Any]):
    """One loader call that every thread missing the same key waits for."""

    def __init__(self, tags: Tags) -> None:
        super().__init__()
        self.tags = tags
        self.stale = False  # a write came in during the load: do not cache its result


class _Layer:
    """One layer: a cachetools cache, its counters, tag index, flights and trace.

    Every method is called with ``lock`` held.
    """

    def __init__(
        self,
        name: str,
        settings: CacheSettings,
        *,
        timer: Callable[[], float],
        on_hot: Callable[[int], None],
        in_prefetch: Callable[[], bool],
    ) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.ticks = itertools.count()
        self.timer = timer
        self.on_hot = on_hot
        self.in_prefetch = in_prefetch
        self.max_size = settings.max_size
        self.ttl_s = settings.ttl_ms / 1000
        self.policy = "LRU"
        self.prefetch = settings.enable_prefetch
        self.threshold = settings.prefetch_threshold
        self.tags: dict[Hashable, set[Hashable]] = {}
        self.flights: dict[Hashable, _Flight] = {}
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.prefetches = self.prefetch_hits = 0
        self.hit_ns: deque[int] = deque(maxlen=_LATENCY_WINDOW)
        self.miss_ns: deque[int] = deque(maxlen=_LATENCY_WINDOW)
        self.trace: deque[tuple[str, Hashable, float]] = deque(maxlen=TRACE_LEN)
        self.cache = self._new_cache()

    def _new_cache(self) -> _Hooked:
        return _new_cache(self.policy, self.max_size, self.ttl_s, self.timer, self._dropped)

    def _dropped(self, key: Hashable, entry: _Entry, expired: bool) -> None:
        if expired:
            self.expirations += 1
        else:
            self.evictions += 1
        self._unindex(key, entry)

    def _unindex(self, key: Hashable, entry: _Entry) -> None:
        for tag in entry.tags:
            keys = self.tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.tags[tag]

    @property
    def size(self) -> int:
        return len(self.cache)

    def lookup(self, key: Hashable) -> Any:
        now = self.timer()
        self.trace.append(("g", key, now))
        try:
            entry = self.cache[key]
        except KeyError:
            self.misses += 1
            return None
        if now - entry.inserted >= self.ttl_s:
            self._drop_expired(key, entry)
            self.misses += 1
            return None
        self.hits += 1
        if entry.prefetched and not self.in_prefetch():
            entry.prefetched = False
            self.prefetch_hits += 1
        if entry.job is not None and self.prefetch and entry.reads < self.threshold:
            entry.reads += 1
            if entry.reads == self.threshold:
                self.on_hot(entry.job)
        return entry.value

    def entry(self, key: Hashable, value: Any, tags: Tags, prefetched: bool) -> _Entry:
        job = key if self.name == "jobs" and isinstance(key, int) else _job_of(tags)
        return _Entry(value, self.timer(), tags, job, prefetched or self.in_prefetch())

    def join(self, key: Hashable, tags: Tags) -> tuple[_Flight, bool]:
        """The flight loading ``key`` and whether the caller leads it."""
        flight = self.flights.get(key)
        if flight is not None:
            return flight, False
        flight = self.flights[key] = _Flight(tags)
        return flight, True

    def land(self, key: Hashable, flight: _Flight) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]

    def _ground(self, key: Hashable) -> None:
        flight = self.flights.pop(key, None)
        if flight is not None:
            flight.stale = True

    def store(self, key: Hashable, entry: _Entry) -> None:
        if entry.prefetched and self._cached(key, entry.inserted):
            return  # a prefetch only fills what is missing
        self.trace.append(("s", key, entry.inserted))
        self._ground(key)
        self._remove(key)  # a write is a new entry: TTL and use count start again
        self._insert(key, entry)
        self.prefetches += entry.prefetched

    def _cached(self, key: Hashable, now: float) -> bool:
        if key not in self.cache:
            return False
        return now - Cache.__getitem__(self.cache, key).inserted < self.ttl_s

    def _remove(self, key: Hashable) -> bool:
        entry = _pop(self.cache, key)
        if entry is not None:
            self._unindex(key, entry)
        return entry is not None

    def invalidate(self, key: Hashable) -> bool:
        self.trace.append(("i", key, self.timer()))
        self._ground(key)
        return self._remove(key)

    def invalidate_tag(self, tag: Hashable) -> int:
        removed = sum(self.invalidate(key) for key in list(self.tags.pop(tag, ())))
        for key in [k for k, f in self.flights.items() if tag in f.tags]:
            self._ground(key)
        return removed

    def expire(self) -> int:
        now, before = self.timer(), self.expirations
        for key in list(Cache.__iter__(self.cache)):
            entry = Cache.__getitem__(self.cache, key)  # a peek: no LRU or LFU bookkeeping
            if now - entry.inserted >= self.ttl_s:
                self._drop_expired(key, entry)
        return self.expirations - before

    def _drop_expired(self, key: Hashable, entry: _Entry) -> None:
        try:
            del self.cache[key]
        except KeyError:  # TTL-LRU deletes it, then says it had expired by its own clock
            pass
        self._dropped(key, entry, True)

    def clear(self) -> int:
        self.trace.append(("c", None, self.timer()))
        removed = len(self.cache)
        self.cache.clear()
        self.tags.clear()
        for flight in self.flights.values():
            flight.stale = True
        self.flights.clear()
        return removed

    def rebuild(self) -> None:
        """Move the entries into a cache built from the current settings, best kept last."""
        self.expire()
        items = _drain(self.cache)
        self.cache = self._new_cache()
        self.tags.clear()
        now = self.timer()
        for key, entry in items:
            if now - entry.inserted >= self.ttl_s:
                self._dropped(key, entry, True)
            else:
                self._insert(key, entry)

    def _insert(self, key: Hashable, entry: _Entry) -> None:
        self.cache[key] = entry  # may evict another entry (reported through the hook)
        if key not in self.cache:
            return  # TTL-LRU refuses an entry already expired by its clock
        for tag in entry.tags:
            self.tags.setdefault(tag, set()).add(key)

    def counters(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in _COUNTERS}
        return counts | {"hit_rate": _ratio(self.hits, self.hits + self.misses)}

    def config(self) -> dict[str, Any]:
        return {
            "maxSize": self.max_size,
            "ttlMs": round(self.ttl_s * 1000),
            "evictionPolicy": self.policy,
            "enablePrefetch": self.prefetch,
            "prefetchThreshold": self.threshold,
        }


class _PrefetchWorker:
    """Runs the prefetcher on one background thread from a bounded queue.

    A burst of hot jobs cannot flood storage: a request finding the queue full
    is dropped and counted, and a job already waiting is not queued twice.
    """

    def __init__(self, fn: Callable[[int], None], local: threading.local) -> None:
        self._fn = fn
        self._local = local
        self._queue: queue.Queue[int | None] = queue.Queue(PREFETCH_QUEUE)
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self.errors = 0

    def submit(self, job_id: int) -> None:
        with self._lock:
            if self._closed or job_id in self._pending:
                return
            try:
                self._queue.put_nowait(job_id)
            except queue.Full:
                self.dropped += 1
                return
            self._pending.add(job_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="cache-prefetch", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        self._local.prefetching = True  # what this thread writes counts as prefetched
        while (job_id := self._queue.get()) is not None:
            try:
                self._fn(job_id)
            except Exception:
                with self._lock:
                    self.errors += 1
                log.warning("prefetch of job %s failed", job_id, exc_info=True)
            finally:
                with self._lock:
                    self._pending.discard(job_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            while not self._queue.empty():  # pending prefetches are not worth waiting for
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        if thread is not None:
            thread.join()


class CacheService:
    """Multi-layer cache with expiry, single-flight loads, prefetching and statistics.

    Args:
        settings: sizes, TTL, prefetch and cleanup settings; every layer starts with them.
        clock: drives expiry, cleanup and sampling (a ``FakeClock`` in tests).
        on_sample: called with each history sample (e.g. to export it).

    Thread-safe. ``start()`` runs the cleanup and sampling thread; ``close()`` stops it.
    """

    def __init__(
        self,
        settings: CacheSettings,
        *,
        clock: Clock | None = None,
        on_sample: Callable[[dict[str, Any]], None] | None = None,
        instrument: Instrument = NO_INSTRUMENT,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._now = self._clock.monotonic
        self._on_sample = on_sample
        self._local = threading.local()
        self._layers = {
            name: _Layer(
                name, settings, timer=self._now, on_hot=self._hot, in_prefetch=self._in_prefetch
            )
            for name in LAYERS
        }
        self._prefetch: _PrefetchWorker | None = None
        self._lock = threading.Lock()  # prefetcher, history and the background thread
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LEN)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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

    def _observe(self, lay: _Layer, hit: bool, ns: int) -> None:
        """Count a timed lookup; the monitor sees every miss and one hit in sixteen."""
        (lay.hit_ns if hit else lay.miss_ns).append(ns)  # deque.append is atomic: no lock
        if (not hit or not next(lay.ticks) & _TIMING_MASK):
            self._instrument.record("cache.get", ns / 1e9, layer=lay.name, hit=str(hit).lower())

    def _load(self, lay: _Layer, key: Hashable, flight: _Flight, loader: Callable[[], Any]) -> Any:
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
        return _each(layers, _Layer.clear)

    def cleanup(self) -> int:
        """Remove expired entries now; the number removed."""
        return _each(self._layers.values(), _Layer.expire)

    def _layer(self, name: str) -> _Layer:
        try:
            return self._layers[name]
        except KeyError:
            raise ConfigError(
                "layer", name, f"unknown cache layer; expected one of {', '.join(LAYERS)}"
            ) from None

    # --- prefetching ---------------------------------------------------------------------------

    def set_prefetcher(self, fn: Callable[[int], None] | None) -> None:
        """Register what loads a hot job's related entries (``None`` turns prefetching off)."""
        with self._lock:
            old, self._prefetch = self._prefetch, _PrefetchWorker(fn, self._local) if fn else None
        if old is not None:
            old.close()

    def _hot(self, job_id: int) -> None:
        worker = self._prefetch
        if worker is not None:
            worker.submit(job_id)

    def _in_prefetch(self) -> bool:
        return bool(getattr(self._local, "prefetching", False))

    # --- statistics ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters, sizes and latencies (microseconds) per layer and in total."""
        layers: dict[str, dict[str, Any]] = {}
        hit_ns: list[int] = []
        miss_ns: list[int] = []
        for name, lay in self._layers.items():
            with lay.lock:
                layers[name] = lay.counters()
                hits, misses = list(lay.hit_ns), list(lay.miss_ns)
            layers[name].update(_latency("hit", hits) | _latency("miss", misses))
            hit_ns += hits
            miss_ns += misses
        total: dict[str, Any] = {k: sum(s[k] for s in layers.values()) for k in _COUNTERS}
        total["hit_rate"] = _ratio(total["hits"], total["hits"] + total["misses"])
        total.update(_latency("hit", hit_ns) | _latency("miss", miss_ns))
        worker = self._prefetch
        total["prefetch_dropped"] = worker.dropped if worker else 0
        total["prefetch_errors"] = worker.errors if worker else 0
        return {"layers": layers, "total": total}

    def sample(self) -> dict[str, Any]:
        """Add a point to :meth:`history` (the background thread does it every few seconds)."""
        stats = self.stats()
        with self._lock:
            last = self._history[-1] if self._history else {}
            point: dict[str, Any] = {"time": self._clock.now().isoformat()}
            for name, s in {**stats["layers"], "total": stats["total"]}.items():
                hits = s["hits"] - last.get(name, {}).get("hits", 0)
                misses = s["misses"] - last.get(name, {}).get("misses", 0)
                point[name] = {f: s[f] for f in _SAMPLE_FIELDS}
                point[name]["interval_hit_rate"] = _ratio(hits, hits + misses)
            self._history.append(point)
        if self._on_sample is not None:
            self._on_sample(point)
        return point

    def history(self) -> list[dict[str, Any]]:
        """Recent samples, oldest first: ``{"time", "total", <layer>...}``, each with hit rates."""
        with self._lock:
            return list(self._history)

    # --- tuning --------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Current settings, per layer, with the seed's names."""
        layers = {}
        for name, lay in self._layers.items():
            with lay.lock:
                layers[name] = lay.config()
        return {"cleanupIntervalMs": self._settings.cleanup_interval_ms, "layers": layers}

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
        size = None if max_size is None else _whole("max_size", max_size, notes)
        ttl = None if ttl_ms is None else _whole("ttl_ms", ttl_ms, notes)
        threshold = prefetch_threshold
        if threshold is not None:
            threshold = _whole("prefetch_threshold", threshold, notes)
        new_policy = _policy(policy) if policy is not None else None
        if enable_prefetch is not None and not isinstance(enable_prefetch, bool):
            raise ConfigError("cache.enablePrefetch", enable_prefetch, "expected true or false")
        with lay.lock:
            lay.max_size = size or lay.max_size
            lay.ttl_s = ttl / 1000 if ttl else lay.ttl_s
            lay.policy = new_policy or lay.policy
            lay.threshold = threshold or lay.threshold
            lay.prefetch = lay.prefetch if enable_prefetch is None else enable_prefetch
            if size or ttl or new_policy:
                lay.rebuild()
        return [f"{layer}: {note}" for note in notes]

    def simulate(
        self, layer: str, sizes: Iterable[int], policies: Iterable[str], ttls: Iterable[int]
    ) -> list[dict[str, Any]]:
        """Replay the layer's recorded accesses against each size x policy x TTL (ms).

        Replay is read-through: a get that misses loads the key; sets and
        invalidations are replayed as they happened. Returns one row per
        combination with ``max_size``, ``eviction_policy``, ``ttl_ms``, ``accesses``,
        ``hits`` and ``hit_rate``.
        """
        lay = self._layer(layer)
        ignored: list[str] = []
        sizes_ = [_whole("max_size", s, ignored) for s in sizes]
        policies_ = [_policy(p) for p in policies]
        ttls_ = [_whole("ttl_ms", t, ignored) for t in ttls]
        with lay.lock:
            trace = list(lay.trace)
        rows = []
        for size, policy, ttl in itertools.product(sizes_, policies_, ttls_):
            hits, gets = _replay(trace, size, policy, ttl / 1000)
            row = {"max_size": size, "eviction_policy": policy, "ttl_ms": ttl, "accesses": gets}
            rows.append(row | {"hits": hits, "hit_rate": _ratio(hits, gets)})
        return rows

    # --- background thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that runs :meth:`cleanup` and :meth:`sample` on schedule."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cache-cleanup", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the background thread and the prefetcher. The cache stays usable."""
        with self._lock:
            thread, self._thread = self._thread, None
            worker, self._prefetch = self._prefetch, None
        self._stop.set()
        if thread is not None:
            thread.join()
        if worker is not None:
            worker.close()

    def _run(self) -> None:
        now = self._now()
        next_cleanup = now + self._settings.cleanup_interval_ms / 1000
        next_sample = now + SAMPLE_INTERVAL_S
        while not self._stop.wait(_POLL_S):
            now = self._now()
            try:
                if now >= next_cleanup:
                    next_cleanup = now + self._settings.cleanup_interval_ms / 1000
                    self.cleanup()
                if now >= next_sample:
                    next_sample = now + SAMPLE_INTERVAL_S
                    self.sample()
            except Exception:  # keep cleaning up even if an on_sample hook fails
                log.exception("cache background task failed")


def _replay(
    trace: Iterable[tuple[str, Hashable, float]], size: int, policy: str, ttl_s: float
) -> tuple[int, int]:
    """Hits and gets of a recorded trace replayed on a cache of ``size``, ``policy`` and TTL."""
    clock = [0.0]
    cache = _new_cache(policy, size, ttl_s, lambda: clock[0])
    hits = gets = 0
    for op, key, at in trace:
        clock[0] = at
        if op == "c":
            cache.clear()
        elif op == "i":
            _pop(cache, key)
        elif op == "g" and (entry := cache.get(key)) and at - entry.inserted < ttl_s:
            hits += 1
        else:  # a set, or a read-through load after a miss
            _pop(cache, key)
            cache[key] = _Entry(None, at)
        gets += op == "g"
    return hits, gets


def _each(layers: Iterable[_Layer], action: Callable[[_Layer], int]) -> int:
    """The sum of ``action`` over ``layers``, each run under its layer's lock."""
    total = 0
    for lay in layers:
        with lay.lock:
            total += action(lay)
    return total


def _job_of(tags: Tags) -> int | None:
    for tag in tags:
        if isinstance(tag, tuple) and len(tag) == 2 and tag[0] == "job" and isinstance(tag[1], int):
            return tag[1]
    return None


def _whole(name: str, value: object, notes: list[str]) -> int:
    """A positive whole number for setting ``name``, clamped to its range (noted)."""
    field = f"cache.{_SEED[name]}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, value, "expected a whole number")
    if not float(value).is_integer():
        raise ConfigError(field, value, "expected a whole number")
    if value <= 0:
        raise ConfigError(field, value, "must be positive")
    clamped, note = clamp("cache", name, value)
    if note:
        notes.append(note)
    return int(clamped)


def _policy(value: object) -> str:
    name = value.upper().replace("_", "-") if isinstance(value, str) else None
    if name not in POLICIES:
        raise ConfigError("cache.evictionPolicy", value, f"expected one of {', '.join(POLICIES)}")
    return name


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _latency(prefix: str, samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {f"{prefix}_mean_us": 0.0, f"{prefix}_p95_us": 0.0}
    ordered = sorted(samples_ns)
    return {
        f"{prefix}_mean_us": sum(ordered) / len(ordered) / 1000,
        f"{prefix}_p95_us": ordered[int(0.95 * (len(ordered) - 1))] / 1000,
    }
