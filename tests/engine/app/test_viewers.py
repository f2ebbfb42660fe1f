"""Viewer load: real reader threads on a console over a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import settings as settings_mod
from engine.app import actions, queries
from engine.app.console import Console
from engine.app.tasks import SUCCEEDED
from engine.app.viewers import VIEWERS
from engine.errors import ConfigError

MONTH = "2025-06"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    c = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": url}}))
    c.start_batch(MONTH, districts=["1", "2", "F"])
    c.batch.run(until_idle=True)
    yield c
    c.close()


def engine_calls(console: Console) -> dict[str, int]:
    return {op: len(r) for op, r in console.recorder.calls() if ":" not in op}


def test_readers_read_through_the_cache_labelled_viewers(console: Console) -> None:
    console.cache.clear()
    engine_before = engine_calls(console)
    task = actions.start_viewer_load(console, month=MONTH, readers=4, seconds=0.5)
    status = console.tasks.wait(task, timeout_s=60)
    assert status.state == SUCCEEDED, status.error
    assert status.name == actions.VIEWER_LOAD and status.fraction == 1.0
    found = status.result
    assert found["readers"] == 4 and found["month"] == MONTH
    assert found["errors"] == 0, found["first_error"]
    assert found["reads"] > 0 and found["reads"] % 3 == 0  # whole rounds of three reads
    assert found["reads_per_s"] == pytest.approx(found["reads"] / found["seconds"], rel=0.01)
    # the first reads missed the emptied cache, the rest hit it
    assert found["cache_misses"] > 0 and found["cache_hits"] > found["cache_misses"]
    assert found["hit_rate"] == found["cache_hits"] / (found["cache_hits"] + found["cache_misses"])
    assert found["alone_reads_per_s"] > 0 and found["alone_uncached_reads_per_s"] > 0
    # every call of the readers is the viewers', none in the engine's figures
    viewers = {op for op, _ in console.recorder.calls() if op.startswith(f"{VIEWERS}:")}
    assert f"{VIEWERS}:cache.get" in viewers
    assert engine_calls(console) == engine_before
    # the read cache's trace knows whose reads they were
    trace = queries.traced_caches(console)["read cache: timelines"]
    assert trace.origins()[VIEWERS] > 0


def test_a_bad_load_is_refused_before_anything_starts(console: Console) -> None:
    with pytest.raises(ConfigError, match="readers"):
        actions.start_viewer_load(console, month=MONTH, readers=0, seconds=1)
    with pytest.raises(ConfigError, match="duration"):
        actions.start_viewer_load(console, month=MONTH, readers=2, seconds=3600)
    with pytest.raises(ConfigError, match="no jobs"):
        actions.start_viewer_load(console, month="2025-03", readers=2, seconds=1)
    assert console.tasks.recent() == []
