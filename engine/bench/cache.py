"""Cache suite: hit latency against a locked cachetools LRUCache and a dict, and a workload.

Latency: each repetition times batches of hits and divides by the batch size
(one ``perf_counter`` pair around a call that takes about a microsecond would
measure the clock); p50 and p95 are over the batches, and each field is the
median over the repetitions, in which the variants take turns; the overhead is
the median of the repetitions' ratios (see bench.paired_ratio). Every variant
includes the same loop overhead.

Workload: a month-end afternoon at default settings, on a fake clock. Dashboard
sessions refresh every few seconds, each reading a page of the month's jobs and
the job and timeline of the district it looks at (sometimes the district's
earlier months), while a batch checks one district a second and invalidates
that job and its timeline. ``workload_hit_rate`` is a fraction (target >= 0.9).
"""

from __future__ import annotations

import random
import statistics
import threading
from collections.abc import Callable
from time import perf_counter_ns

from cachetools import LRUCache

from engine.bench import paired_ratio
from engine.cache import CacheService
from engine.clock import FakeClock
from engine.settings import CacheSettings

_KEYS = tuple(range(100))
_DISTRICTS = 130
_MONTHS = 12  # the current month and eleven earlier ones
_SESSIONS = 8
_REFRESH_S = 5
_PAGE = 25


def run(*, quick: bool) -> dict[str, float]:
    reps, batches = (3, 60) if quick else (7, 300)
    # The variants take turns, so that a slow moment of the machine falls on all three.
    rounds = [
        tuple(_percentiles(timed(batches)) for timed in (_time_ours, _time_locked, _time_dict))
        for _ in range(reps + 1)
    ][1:]  # the first: warm-up
    ours, locked, plain = zip(*rounds, strict=True)
    hit_p50 = statistics.median(p50 for p50, _ in ours)
    locked_p50 = statistics.median(p50 for p50, _ in locked)
    return {
        "hit_p50_us": hit_p50,
        "hit_p95_us": statistics.median(p95 for _, p95 in ours),
        "hit_p50_spread_us": max(p50 for p50, _ in ours) - min(p50 for p50, _ in ours),
        "locked_cachetools_p50_us": locked_p50,
        "dict_p50_us": statistics.median(p50 for p50, _ in plain),
        "overhead_vs_cachetools": paired_ratio([p for p, _ in ours], [p for p, _ in locked]),
        "workload_hit_rate": workload_hit_rate(seconds=600 if quick else 3600),
    }


def _percentiles(per_call_ns: list[float]) -> tuple[float, float]:
    ordered = sorted(per_call_ns)
    return ordered[len(ordered) // 2] / 1000, ordered[int(0.95 * (len(ordered) - 1))] / 1000


def _time_ours(batches: int) -> list[float]:
    cache = CacheService(CacheSettings())
    for key in _KEYS:
        cache.set("jobs", key, (key,), tags=(("job", key),))
    get = cache.get
    out = []
    for _ in range(batches):
        start = perf_counter_ns()
        for key in _KEYS:
            get("jobs", key)
        out.append((perf_counter_ns() - start) / len(_KEYS))
    return out


def _time_locked(batches: int) -> list[float]:
    cache: LRUCache[int, tuple[int]] = LRUCache(500)
    lock = threading.Lock()
    for key in _KEYS:
        cache[key] = (key,)
    out = []
    for _ in range(batches):
        start = perf_counter_ns()
        for key in _KEYS:
            with lock:
                cache.get(key)
        out.append((perf_counter_ns() - start) / len(_KEYS))
    return out


def _time_dict(batches: int) -> list[float]:
    data = {key: (key,) for key in _KEYS}
    out = []
    for _ in range(batches):
        start = perf_counter_ns()
        for key in _KEYS:
            data.get(key)
        out.append((perf_counter_ns() - start) / len(_KEYS))
    return out


def workload_hit_rate(*, seconds: int, seed: int = 7) -> float:
    """Total hit rate of the month-end workload described above."""
    clock = FakeClock()
    cache = CacheService(CacheSettings(), clock=clock, prefetch=_prefetch)
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(_DISTRICTS)]  # a few districts draw most eyes
    looking_at = [0] * _SESSIONS
    try:
        for second in range(seconds):
            clock.advance(1)
            cache.invalidate_job(second % _DISTRICTS)  # the batch checked this district
            for session in range(_SESSIONS):
                if (second + session) % _REFRESH_S == 0:
                    if rng.random() < 0.1:
                        looking_at[session] = rng.choices(range(_DISTRICTS), weights)[0]
                    _refresh(cache, rng, looking_at[session], page=session % 6)
        total = cache.stats().total
    finally:
        cache.close()
    return float(total.hits / (total.hits + total.misses))


def _job_id(district: int, months_back: int = 0) -> int:
    return months_back * _DISTRICTS + district


def _refresh(cache: CacheService, rng: random.Random, district: int, page: int) -> None:
    for d in range(page * _PAGE, min((page + 1) * _PAGE, _DISTRICTS)):
        _read(cache, "jobs", _job_id(d))
    _read(cache, "jobs", _job_id(district))
    _read(cache, "timelines", _job_id(district))
    if rng.random() < 0.2:  # the district's earlier months
        for back in range(1, _MONTHS):
            _read(cache, "jobs", _job_id(district, back))


def _read(cache: CacheService, layer: str, job_id: int) -> None:
    cache.get_or_load(layer, job_id, _loader(layer, job_id), tags=(("job", job_id),))


def _loader(layer: str, job_id: int) -> Callable[[], tuple[str, int]]:
    return lambda: (layer, job_id)  # what storage would return, already immutable


def _prefetch(cache: CacheService, job_id: int) -> None:
    district = job_id % _DISTRICTS
    cache.set("timelines", job_id, ("timelines", job_id), tags=(("job", job_id),))
    for back in range(_MONTHS):
        other = _job_id(district, back)
        if other != job_id:
            cache.set("jobs", other, ("jobs", other), tags=(("job", other),))
