"""Eviction policies: cachetools caches that report what they evict.

``LRU``, ``LFU`` and ``FIFO`` evict by recency, use count or age; ``TTL-LRU``
is cachetools' ``TLRUCache``, which drops expired entries first when full.
Each cache holds :class:`Entry` objects and calls its ``on_drop`` hook for
every entry it evicts (and, for ``TTL-LRU``, expires), so the layer's counters
and tag index follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import Cache, FIFOCache, LFUCache, LRUCache, TLRUCache

POLICIES = ("LRU", "LFU", "FIFO", "TTL-LRU")

Tags = tuple[Hashable, ...]


@dataclasses.dataclass(slots=True, eq=False)
class Entry:
    """A cached value and what the layer needs to know about it."""

    value: Any
    inserted: float
    tags: Tags = ()
    job: int | None = None  # the job whose reads count towards a prefetch
    prefetched: bool = False  # until its first read
    reads: int = 0


Hook = Callable[[Hashable, Entry, bool], None]  # key, entry, whether it expired


def ignore(key: Hashable, entry: Entry, expired: bool) -> None:
    """Hook while a layer is rebuilt or replayed: nothing to report."""


class Hooked(Cache[Hashable, Entry]):
    """Reports evictions, so the layer's counters and tag index follow them."""

    on_drop: Hook

    def popitem(self) -> tuple[Hashable, Entry]:
        key, entry = super().popitem()
        self.on_drop(key, entry, False)
        return key, entry


class _LRU(Hooked, LRUCache[Hashable, Entry]):
    pass


class _LFU(Hooked, LFUCache[Hashable, Entry]):
    pass


class _FIFO(Hooked, FIFOCache[Hashable, Entry]):
    pass


class _TLRU(Hooked, TLRUCache[Hashable, Entry]):
    """Also reports the expiries cachetools does on its own (on every write)."""

    def expire(self, time: float | None = None) -> list[tuple[Hashable, Entry]]:
        expired = super().expire(time)
        for key, entry in expired:
            self.on_drop(key, entry, True)
        return expired


def new_cache(
    policy: str, size: int, ttl_s: float, timer: Callable[[], float], on_drop: Hook = ignore
) -> Hooked:
    """An empty cache of ``policy`` holding ``size`` entries."""
    cache: Hooked
    if policy == "TTL-LRU":
        cache = _TLRU(size, lambda _key, entry, _now: entry.inserted + ttl_s, timer)
    else:
        cache = {"LRU": _LRU, "LFU": _LFU, "FIFO": _FIFO}[policy](size)
    cache.on_drop = on_drop
    return cache


def pop(cache: Hooked, key: Hashable) -> Entry | None:
    """Remove and return ``key``'s entry, if any."""
    try:
        return cache.pop(key, None)
    except KeyError:  # TTL-LRU: the entry expired between cachetools' check and its delete
        return None


def drain(cache: Hooked) -> list[tuple[Hashable, Entry]]:
    """Empty ``cache`` least valuable entry first, without reporting evictions."""
    cache.on_drop = ignore
    items = []
    while True:
        try:
            items.append(cache.popitem())
        except KeyError:
            return items
