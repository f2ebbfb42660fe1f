"""Changing a layer's settings: validated values, and what-if replays of its trace."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Hashable, Iterable

from engine.cache.policies import POLICIES, Entry, new_cache, pop
from engine.cache.stats import ratio
from engine.errors import ConfigError
from engine.settings import CacheSettings, clamp

_SEED = {f.name: f.metadata["seed"] for f in dataclasses.fields(CacheSettings)}

# (op, key, time): op is g(et), s(et), i(nvalidate) or c(lear)
Trace = list[tuple[str, Hashable, float]]


@dataclasses.dataclass(frozen=True, slots=True)
class Retune:
    """New settings for a layer, validated and clamped; ``None`` keeps the current one."""

    max_size: int | None = None
    ttl_ms: int | None = None
    policy: str | None = None
    enable_prefetch: bool | None = None
    prefetch_threshold: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LayerConfig:
    """A layer's current settings, under the settings' field names."""

    max_size: int
    """Entries."""
    ttl_ms: int
    """Milliseconds an entry lives after its write."""
    eviction_policy: str
    """One of :data:`~engine.cache.policies.POLICIES`."""
    enable_prefetch: bool
    prefetch_threshold: int
    """Reads of a job that start its prefetch."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """The cache service's current settings: its cleanup interval and each layer's."""

    cleanup_interval_ms: int
    """Milliseconds between removals of expired entries."""
    layers: dict[str, LayerConfig]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """A recorded trace replayed on a cache of one size, policy and TTL."""

    max_size: int
    """Entries."""
    eviction_policy: str
    ttl_ms: int
    """Milliseconds."""
    accesses: int
    """Reads replayed."""
    hits: int
    hit_rate: float | None
    """Hits over reads (0 to 1); None without reads."""


def retune(
    *,
    max_size: int | None,
    ttl_ms: int | None,
    policy: str | None,
    enable_prefetch: bool | None,
    prefetch_threshold: int | None,
    notes: list[str],
) -> Retune:
    """The settings asked for, clamped to their ranges (noted in ``notes``).

    Invalid values raise :class:`ConfigError` naming the field.
    """
    size = None if max_size is None else whole("max_size", max_size, notes)
    ttl = None if ttl_ms is None else whole("ttl_ms", ttl_ms, notes)
    threshold = prefetch_threshold
    if threshold is not None:
        threshold = whole("prefetch_threshold", threshold, notes)
    new_policy = policy_name(policy) if policy is not None else None
    if enable_prefetch is not None and not isinstance(enable_prefetch, bool):
        raise ConfigError("cache.enablePrefetch", enable_prefetch, "expected true or false")
    return Retune(size, ttl, new_policy, enable_prefetch, threshold)


def simulate(
    trace: Trace,
    sizes: Iterable[int],
    policies: Iterable[str],
    ttls: Iterable[int],
) -> list[Replay]:
    """One row per size x policy x TTL (ms): the trace's hits replayed on such a cache."""
    ignored: list[str] = []
    sizes_ = [whole("max_size", s, ignored) for s in sizes]
    policies_ = [policy_name(p) for p in policies]
    ttls_ = [whole("ttl_ms", t, ignored) for t in ttls]
    rows = []
    for size, policy, ttl in itertools.product(sizes_, policies_, ttls_):
        hits, gets = _replay(trace, size, policy, ttl / 1000)
        rows.append(
            Replay(
                max_size=size,
                eviction_policy=policy,
                ttl_ms=ttl,
                accesses=gets,
                hits=hits,
                hit_rate=ratio(hits, gets),
            )
        )
    return rows


def _replay(trace: Trace, size: int, policy: str, ttl_s: float) -> tuple[int, int]:
    """Hits and gets of a recorded trace replayed on a cache of ``size``, ``policy`` and TTL."""
    clock = [0.0]
    cache = new_cache(policy, size, ttl_s, lambda: clock[0])
    hits = gets = 0
    for op, key, at in trace:
        clock[0] = at
        if op == "c":
            cache.clear()
        elif op == "i":
            pop(cache, key)
        elif op == "g" and (entry := cache.get(key)) and at - entry.inserted < ttl_s:
            hits += 1
        else:  # a set, or a read-through load after a miss
            pop(cache, key)
            cache[key] = Entry(None, at)
        gets += op == "g"
    return hits, gets


def whole(name: str, value: object, notes: list[str]) -> int:
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


def policy_name(value: object) -> str:
    name = value.upper().replace("_", "-") if isinstance(value, str) else None
    if name not in POLICIES:
        raise ConfigError("cache.evictionPolicy", value, f"expected one of {', '.join(POLICIES)}")
    return name
