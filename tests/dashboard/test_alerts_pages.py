"""Alerts on the dashboard: close events on Close progress, performance alerts on Performance."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from engine import settings as settings_mod
from engine.app import queries
from engine.app.console import Console

Open = Callable[[str], AppTest]


def test_close_progress_lists_the_months_events(app: Open, populated: str) -> None:
    at = app("close")  # the populated month closed: its month-final event was stored
    assert not at.exception, [e.value for e in at.exception]
    [events] = [e for e in at.expander if e.label.startswith("Events")]
    rows = events.dataframe[0].value
    assert events.label == f"Events ({len(rows)})"
    assert rows["kind"][0] == "month-final"  # newest first: the month closed last
    assert set(rows["kind"]) <= {"month-final", "late-revision"}  # no job failed
    assert set(rows["delivery"]) == {"stored (no webhook set)"}


def test_performance_lists_alerts_once_one_is_stored(app: Open, db_url: str) -> None:
    at = app("performance")
    assert not at.exception, [e.value for e in at.exception]
    assert any("No alert so far" in s.value for s in at.success)

    console = Console(settings_mod.load(env={}, overrides={"storage": {"db_url": db_url}}))
    try:  # another process's cache runs cold: 200 reads, all misses
        for key in range(200):
            console.cache.get_or_load("jobs", key, lambda: None)
        assert console.alerts.evaluate_performance() == 1
    finally:
        console.close()
    at = app("performance")
    assert not at.exception, [e.value for e in at.exception]
    alerts = at.dataframe[-1].value
    assert list(alerts["kind"]) == ["cache-hit-rate"] and "hit_rate=0.0" in alerts["details"][0]


def test_a_capped_events_list_says_it_shows_the_latest(
    app: Open, populated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "CLOSE_EVENTS_SHOWN", 1)  # the month has more events than 1
    at = app("close")
    [events] = [e for e in at.expander if e.label.startswith("Events")]
    assert events.label == "Events (latest 1)" and len(events.dataframe[0].value) == 1
