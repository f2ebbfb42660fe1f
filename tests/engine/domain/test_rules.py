from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from engine.domain import rules
from engine.domain.models import Job, JobStatus, Phase, Reason, month_end
from engine.settings import ReconSettings
from engine.sources.parse import other_level_metric

S = ReconSettings()


def job(month: str = "2025-03", **kw: object) -> Job:
    return replace(Job(id=1, run_id=1, district="42", month=month, status=JobStatus.ACTIVE), **kw)


@pytest.mark.parametrize(
    ("metric", "old", "new", "significant"),
    [
        ("membership", 1000, 1010, True),  # 1 % exactly meets the threshold
        ("membership", 1000, 1009, False),
        ("clubs", 50, 51, True),  # club counts: 1 absolute
        ("paid_clubs", 50, 50, None),  # unchanged: no change recorded
        ("distinguished_clubs", 100, 102, True),  # 2 %
        ("distinguished_clubs", 100, 101, False),
        ("total_payments", 2000, 2019, False),
        ("total_payments", 2000, 2020, True),
    ],
)
def test_significance_per_metric(
    metric: str, old: float, new: float, significant: bool | None
) -> None:
    changes = rules.detect_changes({metric: old}, {metric: new}, S)
    if significant is None:
        assert changes == ()
    else:
        assert [c.significant for c in changes] == [significant]


def test_change_from_zero_uses_absolute_threshold_not_percent() -> None:
    (change,) = rules.detect_changes({"distinguished_clubs": 0}, {"distinguished_clubs": 1}, S)
    assert change.significant and change.pct is None and change.delta == 1
    strict = replace(S, club_count_threshold=2)
    (minor,) = rules.detect_changes({"suspended_clubs": 0}, {"suspended_clubs": 1}, strict)
    assert not minor.significant


def test_an_unknown_distinguished_level_is_judged_by_the_distinguished_threshold() -> None:
    """1.5 % is significant for membership (1 %), not for distinguished counts (2 %)."""
    metric = other_level_metric("H")
    (change,) = rules.detect_changes({metric: 200}, {metric: 203}, S)
    assert not change.significant
    (change,) = rules.detect_changes({metric: 200}, {metric: 204}, S)
    assert change.significant
    strict = replace(S, distinguished_threshold_pct=1.0, membership_threshold_pct=50.0)
    (change,) = rules.detect_changes({metric: 200}, {metric: 203}, strict)
    assert change.significant
    (change,) = rules.detect_changes({metric: 0}, {metric: 1}, S)  # from 0: absolute 1
    assert change.significant


def test_every_shared_metric_is_compared() -> None:
    old = {"membership": 100, "dcp_goals": 300, "low_clubs": 2, "only_old": 1}
    new = {"membership": 100, "dcp_goals": 330, "low_clubs": 3, "only_new": 1}
    changes = rules.detect_changes(old, new, S)
    assert {c.metric for c in changes} == {"dcp_goals", "low_clubs"}


def test_stability_counts_distinct_as_of_days_not_entries() -> None:
    j = job()
    j = rules.record_check(j, date(2025, 4, 1), False, new_day=True)
    j = rules.record_check(j, date(2025, 4, 1), False, new_day=False)  # same as-of re-checked
    j = rules.record_check(j, date(2025, 4, 1), False, new_day=False)
    assert j.stable_days == 1 and j.checks == 3
    j = rules.record_check(j, date(2025, 4, 2), True, new_day=True)
    assert j.stable_days == 0 and j.significant_changes == 1


def test_stable_finalizes_only_without_data_month_information() -> None:
    j = job(stable_days=3)
    today = date(2025, 4, 5)
    assert rules.decide(j, today, data_month_known=False, settings=S)[1] == Reason.STABLE
    kept, reason = rules.decide(j, today, data_month_known=True, settings=S)
    assert reason is None and kept.phase == Phase.STABILIZING
    assert rules.decide(job(stable_days=2), today, data_month_known=False, settings=S)[1] is None


def test_window_counts_from_month_end_and_june_is_longer() -> None:
    assert rules.window_end(job("2025-03"), S) == month_end("2025-03") + timedelta(days=15)
    assert rules.window_end(job("2025-06"), S) == month_end("2025-06") + timedelta(days=30)
    no_ext = replace(S, auto_extension_enabled=False)
    day15 = month_end("2025-03") + timedelta(days=15)
    assert (
        rules.decide(job(), day15 - timedelta(days=1), data_month_known=True, settings=no_ext)[1]
        is None
    )
    assert (
        rules.decide(job(), day15, data_month_known=True, settings=no_ext)[1]
        == Reason.WINDOW_REACHED
    )
    june_day15 = month_end("2025-06") + timedelta(days=15)
    assert (
        rules.decide(job("2025-06"), june_day15, data_month_known=True, settings=no_ext)[1] is None
    )


def test_extension_while_changes_keep_coming_up_to_the_maximum() -> None:
    end = month_end("2025-03") + timedelta(days=15)
    busy = job(significant_changes=4, stable_days=0)
    extended, reason = rules.decide(busy, end, data_month_known=False, settings=S)
    assert reason is None and extended.extension_days == 1 and extended.phase == Phase.FINALIZING
    spent = job(significant_changes=4, extension_days=5)
    assert rules.decide(spent, end + timedelta(days=5), data_month_known=False, settings=S)[1] == (
        Reason.WINDOW_REACHED
    )
    quiet = job(significant_changes=0, stable_days=2)
    assert rules.decide(quiet, end, data_month_known=False, settings=S)[1] == Reason.WINDOW_REACHED


def test_progress_and_eta_never_after_window_end() -> None:
    today = month_end("2025-03") + timedelta(days=5)
    busy = job(
        stable_days=1, significant_dates=tuple(today - timedelta(days=i) for i in range(1, 7))
    )
    p = rules.progress(busy, today, S)
    assert p.stability == pytest.approx(1 / 3)
    assert p.days_left == 10
    assert p.eta is not None and today < p.eta <= rules.window_end(busy, S)
    late = rules.progress(busy, rules.window_end(busy, S) - timedelta(days=1), S)
    assert late.eta == rules.window_end(busy, S)
