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

Prefetching: the owner passes ``CacheService(..., prefetch=fn)``. When an entry of a
job (a ``jobs`` key, or an entry tagged ``("job", id)``) has been read
``prefetchThreshold`` times, ``fn(cache, job_id)`` runs on one background thread fed
by a bounded queue (a full queue drops the request and counts it). Entries
written while ``fn`` runs, or with ``set(..., prefetched=True)``, are counted
as prefetches, and their first later read as a prefetch hit.

Every get, set and invalidation is recorded in a bounded trace per layer;
:meth:`CacheService.simulate` replays it against other sizes, policies and TTLs.

Modules, by reason to change: :mod:`~engine.cache.service` (the API),
:mod:`~engine.cache.layer` (one layer), :mod:`~engine.cache.policies`
(eviction), :mod:`~engine.cache.values` (what may be cached),
:mod:`~engine.cache.prefetch`, :mod:`~engine.cache.stats`,
:mod:`~engine.cache.tuning` (settings and replays) and
:mod:`~engine.cache.housekeeping` (the background thread).
"""

from __future__ import annotations

from engine.cache.housekeeping import SAMPLE_INTERVAL_S
from engine.cache.layer import TRACE_LEN
from engine.cache.policies import POLICIES
from engine.cache.prefetch import PREFETCH_QUEUE
from engine.cache.service import HISTORY_LEN, LAYERS, CacheService, Prefetch
from engine.cache.stats import CacheSample, CacheStats, CacheTotals, LayerStats, SampleFigures
from engine.cache.tuning import CacheConfig, LayerConfig, Replay
from engine.cache.values import freeze

__all__ = [
    "HISTORY_LEN",
    "LAYERS",
    "POLICIES",
    "PREFETCH_QUEUE",
    "SAMPLE_INTERVAL_S",
    "TRACE_LEN",
    "CacheConfig",
    "CacheSample",
    "CacheService",
    "CacheStats",
    "CacheTotals",
    "LayerConfig",
    "LayerStats",
    "Prefetch",
    "Replay",
    "SampleFigures",
    "freeze",
]
