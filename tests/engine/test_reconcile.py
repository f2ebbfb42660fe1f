from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from engine.app.console import open_storage
from engine.cancel import NEVER, CancelToken
from engine.clock import FakeClock
from engine.domain.models import JobStatus, Reason, Snapshot, month_end
from engine.errors import ItemCancelled, StorageError
from engine.reconcile import Reconciler
from engine.settings import ReconSettings, StorageSettings
from engine.sources.scripted import ScriptedSource
from engine.store.schema import timeline
from engine.store.storage import Storage

END = month_end("2025-03")


def day(n: int) -> date:
    return END + timedelta(days=n)


def snaps(
    members: list[float], *, data_month: str | None, next_from: int | None = None
) -> dict[date, Snapshot]:
    """A closing period: as-of = collection date - 1; next month's data from ``next_from``."""
    out = {}
    for i, m in enumerate(members, start=1):
        month = data_month
        if next_from is not None and i >= next_from:
            month = "2025-04"
        out[day(i)] = Snapshot("42", day(i - 1), month, {"membership": m, "clubs": 50})
    return out


@pytest.fixture(params=["naive", "optimized"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(mode: str, tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(StorageSettings(db_url=f"sqlite:///{tmp_path / 'r.db'}", mode=mode))
    yield s
    s.close()


def reconciler(
    storage: Storage, script: dict[date, Snapshot], mode: str, **recon: object
) -> Reconciler:
    """A reconciler as the console builds it for ``mode``."""
    settings = ReconSettings(**recon)  # type: ignore[arg-type]
    return Reconciler(
        storage=storage,
        source=ScriptedSource({"42": script}),
        settings=settings,
        clock=FakeClock(),
        keep_last_entry=mode == "optimized",
    )


def test_closing_ended_keeps_last_target_month_snapshot(storage: Storage, mode: str) -> None:
    script = snaps(
        [1000, 1050, 1060, 1060, 1060, 1060, 1061, 900], data_month="2025-03", next_from=8
    )
    r = reconciler(storage, script, mode)
    (job,) = r.start_month("2025-03", ["42"], mode=mode)
    done = r.replay(job.id)
    assert done.status == JobStatus.COMPLETED and done.reason == Reason.CLOSING_ENDED
    assert done.final_as_of == day(6)  # the last target-month as-of date
    final = storage.month_end_snapshots("2025-03")["42"]
    assert final.metrics["membership"] == 1061 and final.as_of == day(6)
    entries = storage.timeline(job.id)
    assert entries[-1].data_month == "2025-04" and "closing period over" in entries[-1].note
    assert done.significant_changes == 1  # 1000 -> 1050 only; 1050 -> 1060 is under 1 %


def test_source_without_data_month_falls_back_to_stable(storage: Storage, mode: str) -> None:
    script = snaps([1000, 1100, 1100, 1101, 1101, 1101, 1101, 1101], data_month=None)
    done = (r := reconciler(storage, script, mode)).replay(
        r.start_month("2025-03", ["42"], mode="x")[0].id
    )
    assert done.reason == Reason.STABLE
    assert done.final_as_of == day(4)  # quiet as-of days 2, 3, 4 after the change on day 1
    assert storage.month_end_snapshots("2025-03")["42"].metrics["membership"] == 1101


def test_window_reached_after_extensions_while_changes_continue(
    storage: Storage, mode: str
) -> None:
    growing = [1000 * 1.05**i for i in range(40)]  # significant change every day
    r = reconciler(storage, snaps(growing, data_month=None), mode)
    done = r.replay(r.start_month("2025-03", ["42"], mode="x")[0].id)
    assert done.reason == Reason.WINDOW_REACHED
    assert done.extension_days == 5 and done.last_check_date == day(20)


def test_no_finalization_while_closing_data_is_still_published(storage: Storage, mode: str) -> None:
    flat = [1000.0] * 18 + [1000.0]  # quiet for 17 days, closing ends on day 19
    r = reconciler(storage, snaps(flat, data_month="2025-03", next_from=19), mode)
    done = r.replay(r.start_month("2025-03", ["42"], mode="x")[0].id)
    assert done.reason == Reason.CLOSING_ENDED and done.last_check_date == day(19)


class StopAfter(ScriptedSource):
    """Cancels the token on the n-th fetch, as a killed or timed-out attempt would stop."""

    def __init__(self, script: dict[date, Snapshot], n: int, token: CancelToken) -> None:
        super().__init__({"42": script})
        self.n, self.token = n, token

    def fetch(
        self, district: str, month: str, collection_date: date, cancel: CancelToken = NEVER
    ) -> Snapshot:
        if self.fetches == self.n:
            self.token.cancel("interrupted")
        return super().fetch(district, month, collection_date, cancel)


def _final_state(storage: Storage, r: Reconciler, job_id: int) -> tuple[object, ...]:
    done = r.replay(job_id)
    with storage.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(timeline)).scalar()
    final = dict(storage.month_end_snapshots("2025-03")["42"].metrics)
    return done.reason, done.final_as_of, done.significant_changes, rows, final


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path: Path) -> None:
    members = [1000, 1050, 1100, 1100, 1120, 1120, 1120, 1120, 1130, 1130, 800]
    script = snaps(members, data_month="2025-03", next_from=11)
    straight = open_storage(StorageSettings(db_url=f"sqlite:///{tmp_path / 'a.db'}"))
    r = Reconciler(
        storage=straight,
        source=ScriptedSource({"42": script}),
        settings=ReconSettings(),
        clock=FakeClock(),
    )
    expected = _final_state(straight, r, r.start_month("2025-03", ["42"], mode="optimized")[0].id)
    straight.close()

    resumed = open_storage(StorageSettings(db_url=f"sqlite:///{tmp_path / 'b.db'}"))
    token = CancelToken()
    r = Reconciler(
        storage=resumed,
        source=StopAfter(script, 4, token),
        settings=ReconSettings(),
        clock=FakeClock(),
    )
    (job,) = r.start_month("2025-03", ["42"], mode="optimized")
    with pytest.raises(ItemCancelled):
        r.replay(job.id, token)
    assert r.start_month("2025-03", ["42"], mode="optimized")[0].id == job.id  # resumed, not new
    assert _final_state(resumed, r, job.id) == expected
    resumed.close()


class LostBetweenCommits:
    """The database connection fails on the job update that follows the ``n``-th
    timeline write, once: a naive check's entry is committed, its job's counters are
    not (the fault PostgreSQL restarting mid-batch causes), raised by the driver."""

    def __init__(self, storage: Storage, n: int) -> None:
        self.left, self.armed, self.fired = n, False, False
        event.listen(storage.engine, "before_cursor_execute", self.before)

    def before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO timeline"):
            self.left -= 1
            self.armed = self.left == 0
        elif self.armed and not self.fired and statement.startswith("UPDATE jobs"):
            self.fired = True
            raise sqlite3.OperationalError("disk I/O error")


def _everything(storage: Storage, job_id: int) -> tuple[object, ...]:
    job = storage.get_job(job_id)
    entries = [
        (e.as_of, e.data_month, dict(e.metrics), e.changes, e.significant, e.note)
        for e in storage.timeline(job_id)
    ]
    return replace(job, attempts=0, created_at=None, completed_at=None), entries


@pytest.mark.parametrize("n", [1, 3])
def test_a_naive_check_retried_after_its_entry_was_committed_gives_the_same_result(
    tmp_path: Path, n: int
) -> None:
    members = [1000, 1050, 1100, 1100, 1100, 1100, 1100, 1100]
    script = snaps(members, data_month="2025-03", next_from=8)
    expected = None
    for name, fault in (("straight", 0), ("faulted", n)):
        storage = open_storage(
            StorageSettings(db_url=f"sqlite:///{tmp_path / name}.db", mode="naive")
        )
        r = reconciler(storage, script, "naive")
        (job,) = r.start_month("2025-03", ["42"], mode="naive")
        if fault:
            lost = LostBetweenCommits(storage, fault)
            with pytest.raises(StorageError):
                r.replay(job.id)
            assert lost.fired and len(storage.timeline(job.id)) == n  # its entry is in
        r.replay(job.id)  # the batch runner's retry
        found = _everything(storage, job.id)
        storage.close()
        expected = expected or found
    assert found == expected
    assert expected[1][0][-1] == "first snapshot"
