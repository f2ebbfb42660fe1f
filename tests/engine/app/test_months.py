"""One vocabulary for a month's close: :func:`month_status` from start to close."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from engine import settings as settings_mod
from engine.app.console import Console
from engine.app.months import (
    MonthStatus,
    latest_ended_month,
    month_batch,
    month_status,
    replay_bound,
    status_of,
)
from engine.errors import ConfigError
from engine.reconcile import MonthProgress

MONTH = "2025-03"


def progress(**by_status: int) -> MonthProgress:
    total = sum(by_status.values())
    percent = 100.0 * by_status.get("completed", 0) / total if total else 0.0
    return MonthProgress(MONTH, 1 if total else None, total, by_status, {}, {}, percent, None)


@pytest.mark.parametrize(
    ("by_status", "batch_id", "expected"),
    [
        ({}, None, MonthStatus.NOT_STARTED),
        ({"pending": 3}, 7, MonthStatus.RUNNING),
        ({"completed": 3}, 7, MonthStatus.RUNNING),
        ({"completed": 2, "active": 1}, None, MonthStatus.OPEN),
        ({"completed": 2, "pending": 1}, None, MonthStatus.OPEN),
        ({"cancelled": 2, "pending": 1}, None, MonthStatus.OPEN),
        ({"completed": 3}, None, MonthStatus.CLOSED),
    ],
)
def test_status_of(by_status: dict[str, int], batch_id: int | None, expected: MonthStatus) -> None:
    assert status_of(progress(**by_status), batch_id) is expected


@pytest.mark.parametrize(
    ("stopped", "expected"),
    [
        ({"completed": 3}, MonthStatus.CLOSED),
        ({"completed": 2, "failed": 1}, MonthStatus.INCOMPLETE),
        ({"completed": 1, "cancelled": 2}, MonthStatus.INCOMPLETE),
    ],
)
def test_a_month_with_failed_or_cancelled_districts_is_not_closed(
    stopped: dict[str, int], expected: MonthStatus
) -> None:
    assert status_of(progress(**stopped), None) is expected
    assert not expected.live, "nothing works it: it waits for a new run"


def test_a_cancelled_month_is_incomplete_until_it_is_run_again(tmp_path: Path) -> None:
    settings = settings_mod.load(
        env={}, overrides={"storage": {"db_url": f"sqlite:///{tmp_path / 'm.db'}"}}
    )
    console = Console(settings)
    try:
        batch_id = console.start_batch(MONTH, districts=["1", "2"]).batch_id
        console.batch.cancel(batch_id)  # before any item ran
        console.batch.run(until_idle=True)
        assert {j.status.value for j in console.jobs(MONTH)} == {"cancelled"}
        assert month_status(console, MONTH) is MonthStatus.INCOMPLETE
        console.start_batch(MONTH)  # what the page's "run the month again" does
        console.batch.run(until_idle=True)
        assert month_status(console, MONTH) is MonthStatus.CLOSED
    finally:
        console.close()


def test_only_running_and_open_months_are_live() -> None:
    assert {s for s in MonthStatus if s.live} == {MonthStatus.RUNNING, MonthStatus.OPEN}


def test_a_month_from_no_run_to_closed(tmp_path: Path) -> None:
    settings = settings_mod.load(
        env={}, overrides={"storage": {"db_url": f"sqlite:///{tmp_path / 'm.db'}"}}
    )
    first = Console(settings)
    try:
        assert month_status(first, MONTH) is MonthStatus.NOT_STARTED
        batch_id = first.start_batch(MONTH, districts=["1", "2"]).batch_id
        assert month_batch(first, MONTH) == batch_id
        assert month_status(first, MONTH) is MonthStatus.RUNNING
    finally:
        first.close()  # the batch is interrupted: its jobs stay unfinished
    second = Console(settings)
    try:
        assert month_batch(second, MONTH) is None, "not a batch of this process"
        assert month_status(second, MONTH) is MonthStatus.OPEN
        second.start_batch(MONTH)
        second.batch.run(until_idle=True)
        assert month_status(second, MONTH) is MonthStatus.CLOSED
    finally:
        second.close()


# --- today: how far a run may replay ---------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [(date(2025, 7, 1), "2025-06"), (date(2025, 7, 31), "2025-06"), (date(2026, 1, 1), "2025-12")],
)
def test_latest_ended_month(day: date, expected: str) -> None:
    assert latest_ended_month(day) == expected


def test_replay_bound_is_until_else_today() -> None:
    today = date(2025, 7, 10)
    assert replay_bound("2025-06", until=None, today=today) == today
    assert replay_bound("2025-06", until=date(2025, 7, 1), today=today) == date(2025, 7, 1)
    assert replay_bound("2025-05", until=date(2025, 6, 1), today=today) == date(2025, 6, 1)


@pytest.mark.parametrize(
    ("month", "until", "field", "named"),
    [
        ("2025-07", None, "month", "the first month that can be reconciled is 2025-06"),
        ("2027-03", None, "month", "the first month that can be reconciled is 2025-06"),
        ("2025-06", date(2025, 6, 30), "month", "can be reconciled is 2025-05"),
        ("2025-06", date(2025, 7, 11), "until", "is after today (2025-07-10)"),
    ],
)
def test_replay_bound_refuses_a_month_not_ended_and_a_future_until(
    month: str, until: date | None, field: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)) as caught:
        replay_bound(month, until=until, today=date(2025, 7, 10))
    assert caught.value.field == field
