"""Settings: where each value came from, process-wide changes, clamp notes (issue #19)."""

from __future__ import annotations

from pathlib import Path

from engine import settings as settings_mod
from engine.settings import LiveSettings, clamp


def test_load_traced_says_where_each_value_came_from(tmp_path: Path) -> None:
    file = tmp_path / "recon.toml"
    file.write_text("[cache]\nmax_size = 700\n[batch]\nretry_attempts = 1\n")
    loaded = settings_mod.load_traced(
        file,
        env={"RECON_BATCH_RETRY_ATTEMPTS": "4", "RECON_DB_URL": "sqlite:///x.db"},
        overrides={"batch": {"timeout_ms": 9000, "max_concurrent_jobs": None}},
    )
    assert loaded.path == file
    assert loaded.origin("cache", "max_size") == "file"
    assert loaded.origin("batch", "retry_attempts") == "environment"
    assert loaded.origin("storage", "db_url") == "environment"
    assert loaded.origin("batch", "timeout_ms") == "command line"
    assert loaded.origin("batch", "max_concurrent_jobs") == "default"
    assert loaded.settings.batch.retry_attempts == 4


def test_live_settings_change_is_marked_changed_here() -> None:
    live = LiveSettings(settings_mod.load_traced(env={}))
    changed = live.change("batch", "max_concurrent_jobs", "25")
    assert changed.batch.max_concurrent_jobs == 20 == live.current.batch.max_concurrent_jobs
    assert live.origin("batch", "max_concurrent_jobs") == "changed here"


def test_clamp_notes_show_integers_as_integers() -> None:
    assert clamp("batch", "max_concurrent_jobs", 25.0) == (
        20,
        "maxConcurrentJobs 25 clamped to 20 (range 1-20)",
    )
    assert clamp("source", "failure_rate", 1.5)[1] == "failureRate 1.5 clamped to 1 (range 0-1)"
