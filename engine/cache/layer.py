"""One cache layer: a policy's cache, its counters, tag index, single-flight loads and trace."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from cachetools import Cache

from engine.cache.policies import Entry, Hooked, Tags, drain, new_cache, pop
from engine.cache.stats import COUNTERS, ratio
from engine.cache.tuning import LayerConfig, Retune
from engine.readtrace import TRACE_KEYS, ReadTrace
from engine.settings import CacheSettings

TRACE_LEN = TRACE_KEYS  # recorded accesses per layer, replayed by simulate()
_LATENCY_WINDOW = 1024  # recent latency samples kept per layer


class Flight(Future[Any]):
    """One loader call that every thread missing the same key waits for."""

    def __init__(self, tags: Tags) -> None:
        super().__init__()
        self.tags = tags
        self.stale = False  # a write came in during the load: do not cache its result


class Layer:
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
        self.flights: dict[Hashable, Flight] = {}
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.prefetches = self.prefetch_hits = 0
        self.hit_ns: deque[int] = deque(maxlen=_LATENCY_WINDOW)
        self.miss_ns: deque[int] = deque(maxlen=_LATENCY_WINDOW)
        self.trace = ReadTrace(TRACE_LEN, timer=timer)
        self.cache = self._new_cache()

    def _new_cache(self) -> Hooked:
        return new_cache(self.policy, self.max_size, self.ttl_s, self.timer, self._dropped)

    def _dropped(self, key: Hashable, entry: Entry, expired: bool) -> None:
        if expired:
            self.expirations += 1
        else:
            self.evictions += 1
        self._unindex(key, entry)

    def _unindex(self, key: Hashable, entry: Entry) -> None:
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
        self.trace.read_at(key, now)
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

    def entry(self, key: Hashable, value: Any, tags: Tags, prefetched: bool) -> Entry:
        job = key if self.name == "jobs" and isinstance(key, int) else _job_of(tags)
        return Entry(value, self.timer(), tags, job, prefetched or self.in_prefetch())

    def join(self, key: Hashable, tags: Tags) -> tuple[Flight, bool]:
        """The flight loading ``key`` and whether the caller leads it."""
        flight = self.flights.get(key)
        if flight is not None:
            return flight, False
        flight = self.flights[key] = Flight(tags)
        return flight, True

    def land(self, key: Hashable, flight: Flight) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]

    def _ground(self, key: Hashable) -> None:
        flight = self.flights.pop(key, None)
        if flight is not None:
            flight.stale = True

    def store(self, key: Hashable, entry: Entry) -> None:
        if entry.prefetched and self._cached(key, entry.inserted):
            return  # a prefetch only fills what is missing
        self.trace.add("s", key, entry.inserted)
        self._ground(key)
        self._remove(key)  # a write is a new entry: TTL and use count start again
        self._insert(key, entry)
        self.prefetches += entry.prefetched

    def _cached(self, key: Hashable, now: float) -> bool:
        if key not in self.cache:
            return False
        return now - Cache.__getitem__(self.cache, key).inserted < self.ttl_s

    def _remove(self, key: Hashable) -> bool:
        entry = pop(self.cache, key)
        if entry is not None:
            self._unindex(key, entry)
        return entry is not None

    def invalidate(self, key: Hashable) -> bool:
        self.trace.add("i", key)
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

    def _drop_expired(self, key: Hashable, entry: Entry) -> None:
        try:
            del self.cache[key]
        except KeyError:  # TTL-LRU deletes it, then says it had expired by its own clock
            pass
        self._dropped(key, entry, True)

    def clear(self) -> int:
        self.trace.add("c", None)
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
        items = drain(self.cache)
        self.cache = self._new_cache()
        self.tags.clear()
        now = self.timer()
        for key, entry in items:
            if now - entry.inserted >= self.ttl_s:
                self._dropped(key, entry, True)
            else:
                self._insert(key, entry)

    def _insert(self, key: Hashable, entry: Entry) -> None:
        self.cache[key] = entry  # may evict another entry (reported through the hook)
        if key not in self.cache:
            return  # TTL-LRU refuses an entry already expired by its clock
        for tag in entry.tags:
            self.tags.setdefault(tag, set()).add(key)

    def retune(self, change: Retune) -> None:
        """Apply new settings, rebuilding the cache when its size, TTL or policy changed."""
        self.max_size = change.max_size or self.max_size
        self.ttl_s = change.ttl_ms / 1000 if change.ttl_ms else self.ttl_s
        self.policy = change.policy or self.policy
        self.threshold = change.prefetch_threshold or self.threshold
        if change.enable_prefetch is not None:
            self.prefetch = change.enable_prefetch
        if change.max_size or change.ttl_ms or change.policy:
            self.rebuild()

    def counters(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in COUNTERS}
        return counts | {"hit_rate": ratio(self.hits, self.hits + self.misses)}

    def config(self) -> LayerConfig:
        return LayerConfig(
            max_size=self.max_size,
            ttl_ms=round(self.ttl_s * 1000),
            eviction_policy=self.policy,
            enable_prefetch=self.prefetch,
            prefetch_threshold=self.threshold,
        )


def _job_of(tags: Tags) -> int | None:
    for tag in tags:
        if isinstance(tag, tuple) and len(tag) == 2 and tag[0] == "job" and isinstance(tag[1], int):
            return tag[1]
    return None
