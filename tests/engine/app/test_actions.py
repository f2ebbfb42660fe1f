"""Actions a user asks for from a UI, on an engine with a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import settings as settings_mod
from engine.app import actions
from engine.app.console import Console
from engine.cache import LAYERS
from engine.errors import ConfigError

MONTH = "2025-06"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    c = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}))
    yield c
    c.close()


@pytest.fixture
def read(console: Console) -> Console:
    """The console after a small month-end run and reads that fill every cache."""
    console.start_batch(MONTH, districts=["1", "F"])
    console.batch.run(until_idle=True)
    for job in console.jobs(MONTH):
        console.job(job.id)
        console.timeline(job.id)
        console.storage.get_job(job.id)
    return console


def test_start_comparison_refuses_bad_sizes(console: Console) -> None:
    with pytest.raises(ConfigError, match="districts"):
        actions.start_comparison(console, districts=0, latency_ms=0, closing_days=3, concurrency=2)


def test_apply_setting_validates_clamps_and_says_when_it_applies(console: Console) -> None:
    with pytest.raises(ConfigError, match="expected int"):
        actions.apply_setting(console, "cache", "ttl_ms", "soon")
    with pytest.raises(ConfigError, match="unknown setting"):
        actions.apply_setting(console, "cache", "nope", "1")

    change = actions.apply_setting(console, "cache", "ttl_ms", "999999999999")
    assert change.value == 86_400_000 and change.notes and "clamped" in change.notes[0]
    assert change.applied == "applied now to every cache layer"
    layers = console.cache.config().layers.values()
    assert {layer.ttl_ms for layer in layers} == {86_400_000}

    batch = actions.apply_setting(console, "batch", "max_concurrent_jobs", "12")
    assert batch.value == 12 and not batch.notes  # the whole process takes it (issue #19)
    assert console.batch.settings.max_concurrent_jobs == 12
    restart = actions.apply_setting(console, "recon", "stability_period_days", "4")
    assert "RECON_RECON_STABILITY_PERIOD_DAYS=4" in restart.applied
    assert console.settings.recon.stability_period_days == 3, "the running engine is unchanged"


def test_clear_targets_name_every_layer_and_the_storage_cache() -> None:
    targets = set(actions.CLEAR_TARGETS.values())
    assert targets == {"layers", "storage", "everything", *LAYERS}


def test_clearing_one_layer_leaves_the_others(read: Console) -> None:
    sizes = {name: s.size for name, s in read.cache.stats().layers.items()}
    assert sizes["jobs"] > 0 and sizes["timelines"] > 0
    assert actions.clear_caches(read, "jobs") == sizes["jobs"]
    after = read.cache.stats().layers
    assert after["jobs"].size == 0 and after["timelines"].size == sizes["timelines"]
    assert read.storage.cache_stats().size > 0


def test_clearing_everything_empties_layers_and_storage_cache(read: Console) -> None:
    layers = read.cache.stats().total.size
    storage = read.storage.cache_stats()
    removed = actions.clear_caches(read, "everything")
    assert removed >= layers + storage.size > layers > 0
    assert read.cache.stats().total.size == 0
    assert read.storage.cache_stats().size == 0


def test_clear_caches_refuses_an_unknown_target(console: Console) -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        actions.clear_caches(console, "disk")
