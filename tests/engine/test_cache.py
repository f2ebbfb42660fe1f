from __future__ import annotations

import argparse
import json
import random
import threading
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pytest

from engine.bench import cache as cache_bench
from engine.cache import (
    HISTORY_LEN,
    LAYERS,
    POLICIES,
    PREFETCH_QUEUE,
    CacheSample,
    CacheService,
    LayerConfig,
    LayerStats,
    Prefetch,
)
from engine.cli import cache as cache_commands
from engine.clock import FakeClock
from engine.errors import ConfigError
from engine.settings import CacheSettings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(clock: FakeClock) -> Any:
    made: list[CacheService] = []

    def factory(*, prefetch: Prefetch | None = None, **settings: Any) -> CacheService:
        service = CacheService(CacheSettings(**settings), clock=clock, prefetch=prefetch)
        made.append(service)
        return service

    yield factory
    for service in made:
        service.close()


def layer_stats(cache: CacheService, layer: str = "jobs") -> LayerStats:
    return cache.stats().layers[layer]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    """Wait for another thread to reach a state (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        threading.Event().wait(0.005)


# --- eviction, expiry, invalidation --------------------------------------------------------------


def test_full_layer_evicts_least_recently_used_and_keeps_caching(make: Any) -> None:
    cache = make(max_size=3)
    for key in "abc":
        cache.set("jobs", key, key.upper())
    assert cache.get("jobs", "a") == "A"  # b is now the least recently used
    cache.set("jobs", "d", "D")
    cache.set("jobs", "e", "E")
    assert cache.get("jobs", "b") is None
    assert cache.get("jobs", "c") is None
    assert [cache.get("jobs", k) for k in "ade"] == ["A", "D", "E"]
    stats = layer_stats(cache)
    assert stats.evictions == 2
    assert stats.size == 3


def test_entries_expire_ttl_after_they_were_written(make: Any, clock: FakeClock) -> None:
    cache = make(ttl_ms=10_000)
    cache.set("status", "k", 1)
    clock.advance(6)
    assert cache.get("status", "k") == 1  # a read does not extend the TTL
    clock.advance(3.999)
    assert cache.get("status", "k") == 1
    clock.advance(0.001)
    assert cache.get("status", "k") is None
    assert layer_stats(cache, "status").expirations == 1


def test_cleanup_removes_expired_entries_and_their_tags(make: Any, clock: FakeClock) -> None:
    cache = make(ttl_ms=10_000)
    cache.set("timelines", 1, ("t",), tags=(("job", 1),))
    cache.set("snapshots", "2025-06", "s")
    clock.advance(5)
    cache.set("snapshots", "2025-07", "fresh")
    clock.advance(5)
    assert cache.cleanup() == 2
    assert cache.invalidate_job(1) == 0
    assert cache.get("snapshots", "2025-07") == "fresh"
    assert cache.stats().total.expirations == 2
    assert cache.stats().total.size == 1


def test_invalidate_by_key_job_district_and_layer(make: Any) -> None:
    cache = make()
    cache.set("jobs", 17, "job17", tags=(("district", "42"),))
    cache.set("timelines", 17, ("t17",), tags=(("job", 17), ("district", "42")))
    cache.set("jobs", 18, "job18", tags=(("district", "42"),))
    cache.set("jobs", 19, "job19", tags=(("district", "7"),))
    cache.set("config", "a", 1)
    cache.set("config", "b", 2)

    assert cache.invalidate("config", "a") is True
    assert cache.invalidate("config", "a") is False
    assert cache.get("config", "b") == 2

    assert cache.invalidate_job(17) == 2
    assert cache.get("jobs", 17) is None and cache.get("timelines", 17) is None
    assert cache.get("jobs", 18) == "job18"

    assert cache.invalidate_district("42") == 1
    assert cache.get("jobs", 18) is None
    assert cache.get("jobs", 19) == "job19"

    assert cache.clear("jobs") == 1
    assert cache.get("config", "b") == 2
    assert cache.clear() == 1
    assert cache.stats().total.size == 0


def test_rewriting_an_entry_replaces_its_tags(make: Any) -> None:
    cache = make()
    cache.set("jobs", 5, "v1", tags=(("district", "1"),))
    cache.set("jobs", 5, "v2", tags=(("district", "2"),))
    assert cache.invalidate_district("1") == 0
    assert cache.get("jobs", 5) == "v2"
    assert cache.invalidate_district("2") == 1


def test_unknown_layer_is_a_config_error(make: Any) -> None:
    cache = make()
    with pytest.raises(ConfigError, match="layer"):
        cache.get("nope", 1)


# --- statistics ----------------------------------------------------------------------------------


def test_stats_arithmetic_per_layer_and_total(make: Any) -> None:
    cache = make(max_size=2)
    cache.set("jobs", 1, "a")
    cache.set("jobs", 2, "b")
    cache.set("jobs", 3, "c")  # evicts 1
    for key in (1, 2, 3, 3):
        cache.get("jobs", key)
    cache.set("timelines", 1, ())
    cache.get("timelines", 1)
    cache.get("timelines", 2)

    jobs = layer_stats(cache)
    assert (jobs.hits, jobs.misses, jobs.evictions) == (3, 1, 1)
    assert jobs.hit_rate == pytest.approx(0.75)
    assert (jobs.size, jobs.max_size) == (2, 2)
    total = cache.stats().total
    assert (total.hits, total.misses) == (4, 2)
    assert total.hit_rate == pytest.approx(4 / 6)
    assert total.size == 3
    assert total.max_size == 2 * len(LAYERS)
    assert layer_stats(cache, "config").hit_rate is None
    for name in ("hit_mean_us", "hit_p95_us", "miss_mean_us", "miss_p95_us"):
        assert getattr(total, name) >= 0.0


def test_latency_p95_is_the_nearest_rank_never_below_the_mean() -> None:
    from engine.cache.stats import _mean_p95_us

    assert _mean_p95_us([9_000, 1_000]) == (5.0, 9.0)  # two samples: the larger
    assert _mean_p95_us([n * 1_000 for n in range(100, 0, -1)]) == (50.5, 95.0)
    assert _mean_p95_us([]) == (0.0, 0.0)


def test_get_or_load_records_load_time_as_miss_latency(make: Any) -> None:
    cache = make()
    assert cache.get_or_load("jobs", 1, lambda: "loaded") == "loaded"
    assert cache.get_or_load("jobs", 1, lambda: "other") == "loaded"
    stats = layer_stats(cache)
    assert (stats.hits, stats.misses) == (1, 1)
    assert stats.miss_mean_us > 0 and stats.hit_mean_us > 0


def test_history_samples_interval_hit_rate() -> None:
    seen: list[CacheSample] = []
    cache = CacheService(CacheSettings(), clock=FakeClock(), on_sample=seen.append)
    cache.set("jobs", 1, "a")
    cache.get("jobs", 1)
    cache.get("jobs", 2)
    first = cache.sample()
    cache.get("jobs", 1)
    second = cache.sample()
    third = cache.sample()
    assert first.total.interval_hit_rate == pytest.approx(0.5)
    assert second.layers["jobs"].interval_hit_rate == pytest.approx(1.0)
    assert second.layers["jobs"].hit_rate == pytest.approx(2 / 3)
    assert third.layers["jobs"].interval_hit_rate is None
    assert cache.history() == [first, second, third] == seen
    for _ in range(HISTORY_LEN):
        cache.sample()
    assert len(cache.history()) == HISTORY_LEN


# --- single flight -------------------------------------------------------------------------------


def test_threads_missing_together_share_one_load(make: Any) -> None:
    cache = make()
    threads_n = 12
    calls: list[int] = []
    release = threading.Event()

    def loader() -> tuple[str, ...]:
        calls.append(1)
        release.wait(10)
        return ("job", "17")

    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_load("jobs", 17, loader)))
        for _ in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: layer_stats(cache).misses == threads_n)  # every thread has missed
    release.set()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [("job", "17")] * threads_n
    assert cache.get("jobs", 17) == ("job", "17")


def test_a_failed_load_reaches_every_waiter_and_caches_nothing(make: Any) -> None:
    cache = make()
    release = threading.Event()
    errors: list[BaseException] = []

    def loader() -> str:
        release.wait(10)
        raise OSError("storage down")

    def read() -> None:
        try:
            cache.get_or_load("jobs", 1, loader)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: layer_stats(cache).misses == 4)
    release.set()
    for thread in threads:
        thread.join()
    assert len(errors) == 4
    assert cache.get("jobs", 1) is None
    assert cache.get_or_load("jobs", 1, lambda: "ok") == "ok"


def test_a_write_during_a_load_keeps_the_loaded_value_out(make: Any) -> None:
    cache = make()
    started, release = threading.Event(), threading.Event()

    def loader() -> str:
        started.set()
        release.wait(10)
        return "stale"

    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            cache.get_or_load("jobs", 1, loader, tags=(("district", "9"),))
        )
    )
    thread.start()
    assert started.wait(10)
    cache.invalidate_district("9")
    release.set()
    thread.join()
    assert result == ["stale"]  # the reader that started before the write gets its value
    assert cache.get("jobs", 1) is None  # but later readers do not


# --- prefetching ---------------------------------------------------------------------------------


def test_hot_job_triggers_prefetch_and_later_reads_count_as_prefetch_hits(make: Any) -> None:
    done = threading.Event()
    requested: list[int] = []

    def prefetch(cache: CacheService, job_id: int) -> None:
        requested.append(job_id)
        cache.set("timelines", job_id, ("t",), tags=(("job", job_id),))  # marked: prefetch thread
        cache.set("jobs", 8, "job8", prefetched=True)
        cache.set("jobs", job_id, "already cached", prefetched=True)  # kept as it is
        done.set()

    cache = make(prefetch_threshold=3, prefetch=prefetch)
    cache.set("jobs", 7, "job7")
    for _ in range(3):
        assert cache.get("jobs", 7) == "job7"
    assert done.wait(10)
    assert requested == [7]
    for _ in range(5):  # past the threshold: no second prefetch for the same entry
        cache.get("jobs", 7)
    assert cache.get("jobs", 7) == "job7"
    assert cache.get("timelines", 7) == ("t",)
    assert cache.get("timelines", 7) == ("t",)  # only the first read is a prefetch hit
    total = cache.stats().total
    assert total.prefetches == 2
    assert total.prefetch_hits == 1
    assert cache.get("jobs", 8) == "job8"
    assert cache.stats().total.prefetch_hits == 2
    assert requested == [7]


def test_prefetch_queue_is_bounded_and_drops_are_counted(make: Any) -> None:
    entered, release = threading.Event(), threading.Event()

    def prefetch(cache: CacheService, job_id: int) -> None:
        entered.set()
        release.wait(10)

    cache = make(prefetch_threshold=1, prefetch=prefetch)
    extra = 5
    for job_id in range(PREFETCH_QUEUE + extra + 1):
        cache.set("jobs", job_id, "j")
    cache.get("jobs", 0)
    assert entered.wait(10)  # the worker is busy with job 0
    for job_id in range(1, PREFETCH_QUEUE + extra + 1):
        cache.get("jobs", job_id)
    assert cache.stats().total.prefetch_dropped == extra
    release.set()


def test_prefetch_off_for_a_layer(make: Any) -> None:
    requested: list[int] = []
    cache = make(prefetch_threshold=1, prefetch=lambda _, job_id: requested.append(job_id))
    cache.tune("jobs", enable_prefetch=False)
    cache.set("jobs", 1, "j")
    cache.get("jobs", 1)
    cache.close()  # joins the worker: anything submitted has run
    assert requested == []
    assert cache.config().layers["jobs"].enable_prefetch is False


# --- live tuning ---------------------------------------------------------------------------------


def test_shrinking_keeps_the_most_recently_used_entries(make: Any) -> None:
    cache = make(max_size=10)
    for key in range(10):
        cache.set("jobs", key, key, tags=(("district", str(key % 2)),))
    for key in (0, 1, 2):
        cache.get("jobs", key)
    assert cache.tune("jobs", max_size=5) == []
    kept = [k for k in range(10) if cache.get("jobs", k) is not None]
    assert kept == [0, 1, 2, 8, 9]
    assert layer_stats(cache).evictions == 5
    cache.tune("jobs", max_size=50)
    assert layer_stats(cache).size == 5
    assert cache.invalidate_district("1") == 2  # tags survive the rebuild: 1 and 9
    assert cache.config().layers["jobs"].max_size == 50


def test_shorter_ttl_counts_from_the_original_write(make: Any, clock: FakeClock) -> None:
    cache = make()
    cache.set("config", "old", 1)
    clock.advance(20)
    cache.set("config", "new", 2)
    clock.advance(5)
    cache.tune("config", ttl_ms=10_000)
    assert cache.get("config", "old") is None
    assert cache.get("config", "new") == 2
    assert layer_stats(cache, "config").expirations == 1


@pytest.mark.parametrize(
    ("policy", "survivor"),
    [("LRU", "b"), ("LFU", "a"), ("FIFO", "c"), ("TTL-LRU", "b")],
)
def test_policy_change_keeps_entries_and_changes_eviction(
    make: Any, policy: str, survivor: str
) -> None:
    cache = make(max_size=3)
    cache.tune("jobs", policy=policy)
    for key in "abc":
        cache.set("jobs", key, key)
    for _ in range(3):
        cache.get("jobs", "a")
    cache.get("jobs", "b")
    cache.set("jobs", "d", "d")
    cache.set("jobs", "e", "e")  # LRU: out c, a; LFU: out c, d; FIFO: out a, b
    assert cache.get("jobs", survivor) == survivor
    assert layer_stats(cache).size == 3
    assert cache.config().layers["jobs"].eviction_policy == policy


def test_policy_switch_on_a_full_layer_keeps_every_entry(make: Any) -> None:
    cache = make(max_size=4)
    for key in range(4):
        cache.set("jobs", key, key)
    for policy in ("LFU", "FIFO", "ttl-lru", "LRU"):
        cache.tune("jobs", policy=policy)
        assert [cache.get("jobs", k) for k in range(4)] == [0, 1, 2, 3]


def test_ttl_lru_evicts_expired_entries_first(make: Any, clock: FakeClock) -> None:
    cache = make(max_size=2, ttl_ms=10_000)
    cache.tune("jobs", policy="TTL-LRU")
    cache.set("jobs", "old", 1)
    clock.advance(6)
    cache.set("jobs", "young", 2)
    cache.get("jobs", "young")
    cache.get("jobs", "old")  # most recently used, but about to expire
    clock.advance(5)
    cache.set("jobs", "new", 3)
    assert cache.get("jobs", "young") == 2
    stats = layer_stats(cache)
    assert (stats.expirations, stats.evictions) == (1, 0)


def test_tune_clamps_out_of_range_values_with_a_note(make: Any) -> None:
    cache = make()
    notes = cache.tune("status", max_size=5_000_000, ttl_ms=10)
    assert len(notes) == 2
    assert "maxSize" in notes[0] and "1000000" in notes[0]
    assert "ttlMs" in notes[1]
    config = cache.config().layers["status"]
    assert (config.max_size, config.ttl_ms) == (1_000_000, 1000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_size": 0}, "cache.maxSize"),
        ({"max_size": "big"}, "cache.maxSize"),
        ({"max_size": True}, "cache.maxSize"),
        ({"ttl_ms": 1.5}, "cache.ttlMs"),
        ({"prefetch_threshold": -1}, "cache.prefetchThreshold"),
        ({"policy": "random"}, "cache.evictionPolicy"),
        ({"enable_prefetch": "yes"}, "cache.enablePrefetch"),
    ],
)
def test_tune_refuses_invalid_values_and_changes_nothing(
    make: Any, kwargs: Any, field: str
) -> None:
    cache = make()
    before = cache.config()
    with pytest.raises(ConfigError) as caught:
        cache.tune("jobs", **({"max_size": 100} | kwargs))
    assert caught.value.field == field
    assert cache.config() == before


def test_config_uses_the_settings_field_names(make: Any) -> None:
    config = make().config()
    assert config.cleanup_interval_ms == 60_000
    assert set(config.layers) == set(LAYERS)
    assert config.layers["timelines"] == LayerConfig(
        max_size=500,
        ttl_ms=300_000,
        eviction_policy="LRU",
        enable_prefetch=True,
        prefetch_threshold=10,
    )


# --- what-if simulation --------------------------------------------------------------------------


def test_simulate_replays_the_recorded_trace(make: Any, clock: FakeClock) -> None:
    cache = make()
    for key in "ABACAB":  # one access a second, read-through
        clock.advance(1)
        cache.get_or_load("config", key, lambda k=key: k)
    rows = cache.simulate("config", [1, 2, 3], ["LRU", "FIFO", "LFU"], [300_000])
    rates = {(r.max_size, r.eviction_policy): r.hits for r in rows}
    # Hand-computed, size 2: LRU A- B- A+ C-(out B) A+ B-; FIFO A- B- A+ C-(out A) A- B-;
    # LFU A- B- A+(A2) C-(out B) A+ B-. Size 3 holds everything after the first touch.
    assert rates == {
        (1, "LRU"): 0, (1, "FIFO"): 0, (1, "LFU"): 0,
        (2, "LRU"): 2, (2, "FIFO"): 1, (2, "LFU"): 2,
        (3, "LRU"): 3, (3, "FIFO"): 3, (3, "LFU"): 3,
    }  # fmt: skip
    assert all(r.accesses == 6 for r in rows)
    assert rows[3].hit_rate == pytest.approx(2 / 6)

    # TTL 2.5 s, size 3: A- B- A+ C- A-(expired, written at t1) B-(expired)
    by_ttl = cache.simulate("config", [3], ["LRU", "TTL-LRU"], [1000, 2500])
    assert [(r.eviction_policy, r.ttl_ms, r.hits) for r in by_ttl] == [
        ("LRU", 1000, 0),
        ("LRU", 2500, 1),
        ("TTL-LRU", 1000, 0),
        ("TTL-LRU", 2500, 1),
    ]


def test_simulate_replays_invalidations_and_clears(make: Any) -> None:
    cache = make()
    cache.set("status", "k", 1)
    cache.get("status", "k")
    cache.invalidate("status", "k")
    cache.get_or_load("status", "k", lambda: 2)
    cache.clear("status")
    cache.get("status", "k")
    assert cache.simulate("status", [10], ["LRU"], [300_000])[0].hits == 1


# --- immutability --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frozen:
    value: int


def test_cached_values_cannot_be_corrupted_by_callers(make: Any) -> None:
    cache = make()
    original = {"members": [1, 2], "name": "D42"}
    cache.set("snapshots", "42", original)
    original["members"].append(3)
    original["name"] = "changed"
    got = cache.get("snapshots", "42")
    assert isinstance(got, MappingProxyType)
    assert got == {"members": (1, 2), "name": "D42"}
    with pytest.raises(TypeError):
        got["name"] = "x"  # type: ignore[index]
    assert cache.get_or_load("jobs", 1, lambda: [1, [2]]) == (1, (2,))
    frozen = Frozen(1)
    cache.set("jobs", 2, frozen)
    assert cache.get("jobs", 2) is frozen


def test_mutable_objects_and_none_are_refused(make: Any) -> None:
    cache = make()

    class Mutable:
        pass

    with pytest.raises(TypeError, match="Mutable"):
        cache.set("jobs", 1, Mutable())
    with pytest.raises(TypeError, match="None"):
        cache.set("jobs", 1, None)
    assert cache.get_or_load("jobs", 2, lambda: None) is None
    assert cache.get("jobs", 2) is None


# --- background thread ---------------------------------------------------------------------------


def test_background_thread_cleans_up_and_samples_until_closed(clock: FakeClock) -> None:
    sampled = threading.Event()
    cache = CacheService(
        CacheSettings(cleanup_interval_ms=1000, ttl_ms=1000),
        clock=clock,
        on_sample=lambda point: sampled.set(),
    )
    cache.set("jobs", 1, "j")
    cache.start()
    wait_until(lambda: clock.advance(1) or sampled.is_set())  # the thread reads the clock
    assert cache.stats().total.expirations == 1
    cache.close()
    assert not any(t.name == "cache-cleanup" for t in threading.enumerate())


# --- stress --------------------------------------------------------------------------------------


def test_eight_threads_mixing_operations_keep_counters_consistent(clock: FakeClock) -> None:
    cache = CacheService(
        CacheSettings(max_size=50, ttl_ms=2000, prefetch_threshold=5),
        clock=clock,
        prefetch=lambda c, job: c.set("timelines", job, ("p",), tags=(("job", job),)),
    )
    gets = [0] * 8
    errors: list[BaseException] = []
    deadline = time.monotonic() + 2.0

    def work(index: int) -> None:
        rng = random.Random(index)
        try:
            for _ in range(20_000):
                if time.monotonic() > deadline:
                    return
                gets[index] += random_operation(cache, clock, rng)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache.close()
    assert errors == []
    stats = cache.stats()
    total = stats.total
    assert total.hits + total.misses == sum(gets) > 0
    for layer in stats.layers.values():
        assert layer.size <= layer.max_size
    cache.clear()
    assert cache.invalidate_district(1) == 0
    assert cache.stats().total.size == 0


def random_operation(cache: CacheService, clock: FakeClock, rng: random.Random) -> int:
    """One random cache call; 1 if it was a read."""
    layer, key = rng.choice(("jobs", "timelines")), rng.randrange(120)
    tags = (("job", key), ("district", key % 7))
    op = rng.random()
    if op < 0.45:
        cache.get(layer, key)
    elif op < 0.7:
        cache.get_or_load(layer, key, lambda: (layer, key), tags=tags)
    elif op < 0.85:
        cache.set(layer, key, (key,), tags=tags)
    elif op < 0.92:
        cache.invalidate(layer, key)
    elif op < 0.96:
        cache.invalidate_job(key)
    elif op < 0.98:
        cache.invalidate_district(key % 7)
    elif op < 0.995:
        clock.advance(0.5)
        cache.cleanup()
    else:
        cache.tune(layer, max_size=rng.randrange(20, 80), policy=rng.choice(POLICIES))
    return int(op < 0.7)


# --- command line and benchmark ------------------------------------------------------------------


class _Ctx:
    def __init__(self, cache: CacheService) -> None:
        self._console = argparse.Namespace(cache=cache)

    def console(self) -> Any:
        return self._console


LAYER_KEYS = [
    "hits",
    "misses",
    "evictions",
    "expirations",
    "prefetches",
    "prefetch_hits",
    "size",
    "max_size",
    "hit_rate",
    "hit_mean_us",
    "hit_p95_us",
    "miss_mean_us",
    "miss_p95_us",
]
"""``recon cache stats --json``: a layer's keys, in the order the first version printed them."""


def run_cli(cache: CacheService, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cache_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args, _Ctx(cache))  # type: ignore[no-any-return]


def test_cli_stats_and_clear(make: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cache = make()
    cache.set("jobs", 1, "j")
    cache.set("config", "c", 1)
    cache.get("jobs", 1)
    assert run_cli(cache, ["cache", "stats", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["layers"]["jobs"]["hits"] == 1
    assert list(printed) == ["layers", "total"] and list(printed["layers"]) == list(LAYERS)
    assert list(printed["layers"]["jobs"]) == LAYER_KEYS  # the keys, in order, as before
    assert list(printed["total"]) == [*LAYER_KEYS, "prefetch_dropped", "prefetch_errors"]
    assert run_cli(cache, ["cache", "stats"]) == 0
    assert "timelines" in capsys.readouterr().out
    assert run_cli(cache, ["cache", "clear", "--layer", "jobs"]) == 0
    assert "cleared 1 entries" in capsys.readouterr().out
    assert cache.get("config", "c") == 1
    assert run_cli(cache, ["cache", "clear"]) == 0
    assert cache.stats().total.size == 0


def test_bench_quick_reports_every_field() -> None:
    result = cache_bench.run(quick=True)
    for name in (
        "hit_p50_us",
        "hit_p95_us",
        "locked_cachetools_p50_us",
        "dict_p50_us",
        "overhead_vs_cachetools",
        "workload_hit_rate",
    ):
        assert isinstance(result[name], float) and result[name] > 0
    assert 0 < result["workload_hit_rate"] <= 1
