"""The alert rules: pure functions of job states and figures."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.domain.models import Job, JobStatus
from engine.errors import ConfigError
from engine.notify.rules import (
    OperationP95,
    hit_rate_low,
    late_revision,
    memory_high,
    missed_ticks,
    p95_thresholds,
    slow_operations,
)
from engine.settings import ReconSettings

SETTINGS = ReconSettings()
BASE = Job(id=1, run_id=1, district="42", month="2025-06", status=JobStatus.ACTIVE)


def _checked(job: Job, day: date, *, significant: bool, stable: int) -> Job:
    return replace(
        job,
        last_check_date=day,
        checks=job.checks + 1,
        significant_changes=job.significant_changes + (1 if significant else 0),
        stable_days=stable,
        last_significant_as_of=day - timedelta(days=1)
        if significant
        else job.last_significant_as_of,
    )


def test_a_significant_change_after_a_stable_day_is_late() -> None:
    before = _checked(BASE, date(2025, 7, 3), significant=False, stable=1)
    after = _checked(before, date(2025, 7, 4), significant=True, stable=0)
    assert late_revision(before, after, SETTINGS) == "after-stable"


def test_a_change_while_the_job_still_moves_is_not_late() -> None:
    before = _checked(BASE, date(2025, 7, 3), significant=True, stable=0)
    after = _checked(before, date(2025, 7, 4), significant=True, stable=0)
    assert late_revision(before, after, SETTINGS) is None


def test_a_check_without_a_significant_change_is_never_late() -> None:
    before = _checked(BASE, date(2025, 7, 3), significant=False, stable=2)
    after = _checked(before, date(2025, 7, 4), significant=False, stable=3)
    assert late_revision(before, after, SETTINGS) is None


def test_the_first_check_is_never_a_revision() -> None:
    after = _checked(BASE, date(2025, 7, 1), significant=True, stable=0)
    assert late_revision(BASE, after, SETTINGS) is None


def test_a_change_after_the_projected_close_is_late_even_without_a_stable_day() -> None:
    # June's window is 30 days: the close projected on its last day is that day.
    window_end = date(2025, 6, 30) + timedelta(days=SETTINGS.june_reconciliation_days)
    before = _checked(BASE, window_end, significant=True, stable=0)
    after = _checked(before, window_end + timedelta(days=1), significant=True, stable=0)
    assert late_revision(before, after, SETTINGS) == "after-projected-close"


def test_missed_ticks_count_whole_periods_after_the_last_tick() -> None:
    last = datetime(2025, 7, 1, tzinfo=UTC)
    assert missed_ticks(last, last + timedelta(hours=23), 86_400) == 0
    assert missed_ticks(last, last + timedelta(hours=25), 86_400) == 1
    assert missed_ticks(last, last + timedelta(hours=48), 86_400) == 2
    with pytest.raises(ConfigError):
        missed_ticks(last, last, 0)


def test_the_hit_rate_rule_needs_a_minimum_sample() -> None:
    assert hit_rate_low(0, 6, threshold=0.7, min_reads=200) is None  # 6 reads: no verdict
    assert hit_rate_low(100, 100, threshold=0.7, min_reads=200) is True
    assert hit_rate_low(140, 60, threshold=0.7, min_reads=200) is False  # 70 %: not below


def test_slow_operations_use_their_own_threshold_and_a_minimum_of_calls() -> None:
    ops = [
        OperationP95("source.fetch", 2500.0, 50),
        OperationP95("job.check", 2500.0, 50),
        OperationP95("parse", 99_000.0, 3),  # too few calls to judge
    ]
    found = slow_operations(
        ops, default_ms=10_000, per_operation={"source.fetch": 2000}, min_calls=20
    )
    assert found == {"source.fetch": True, "job.check": False}


def test_memory_is_high_above_its_share_of_the_threshold() -> None:
    assert memory_high(None, 1024, 80) is None
    assert memory_high(819.0, 1024, 80) is False
    assert memory_high(820.0, 1024, 80) is True


def test_per_operation_thresholds_are_parsed_or_refused() -> None:
    assert p95_thresholds("") == {}
    assert p95_thresholds("source.fetch=2000, job.check=5000.5") == {
        "source.fetch": 2000.0,
        "job.check": 5000.5,
    }
    for bad in ("fetch", "fetch=abc", "=10", "fetch=-1", "fetch=nan", "fetch=inf"):
        with pytest.raises(ConfigError):
            p95_thresholds(bad)
