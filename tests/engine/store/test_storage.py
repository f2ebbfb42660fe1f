from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite

from engine.app.console import open_storage
from engine.domain.models import Job, JobStatus, MetricChange, Phase, Snapshot, TimelineEntry
from engine.errors import StorageError
from engine.settings import StorageSettings
from engine.store.cached import CachedJobStore, ReadCache
from engine.store.database import Database
from engine.store.jobs import SqlJobStore
from engine.store.rows import to_json
from engine.store.schema import ISODate, UTCDateTime, timeline
from engine.store.storage import Storage
from engine.store.writes import INLINE_FLUSH_FACTOR, Deferred

NOW = datetime(2025, 7, 3, tzinfo=UTC)


def entry(job_id: int, day: int, membership: float) -> TimelineEntry:
    change = (MetricChange("membership", membership - 1, membership, True),)
    return TimelineEntry(
        job_id, date(2025, 7, day), NOW, "2025-06", {"membership": membership}, change, True
    )


def snap(day: int, membership: float, month: str = "2025-06") -> Snapshot:
    return Snapshot("42", date(2025, 7, day), month, {"membership": membership})


class StorageContract:
    """Run against every storage mode: what either mode promises."""

    mode = ""

    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'recon.db'}"

    @pytest.fixture
    def storage(self, url: str) -> Iterator[Storage]:
        s = open_storage(StorageSettings(db_url=url, mode=self.mode))
        yield s
        s.close()

    def test_run_creates_pending_jobs_and_keeps_history(self, storage: Storage) -> None:
        first = storage.create_run("2025-06", ["1", "2", "F"], mode=self.mode, source="sim")
        assert [j.district for j in first] == ["1", "2", "F"]
        assert all(j.status == JobStatus.PENDING for j in first)
        second = storage.create_run("2025-06", ["1"], mode=self.mode, source="sim")
        assert [j.district for j in storage.jobs(month="2025-06")] == ["1"]
        assert len(storage.runs("2025-06")) == 2 and second[0].run_id != first[0].run_id
        assert len(storage.jobs(run_id=first[0].run_id)) == 3

    def test_transition_is_committed_before_it_returns(self, storage: Storage, url: str) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        storage.transition(replace(job, status=JobStatus.ACTIVE, phase=Phase.MONITORING))
        other = open_storage(StorageSettings(db_url=url, mode="naive"))
        try:
            assert other.get_job(job.id).status == JobStatus.ACTIVE
        finally:
            other.close()

    def test_reentry_of_same_as_of_updates_never_duplicates(self, storage: Storage) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        storage.save_progress(job, entry(job.id, 2, 100), None)
        storage.save_progress(job, entry(job.id, 2, 105), None)
        storage.save_progress(job, entry(job.id, 3, 106), None)
        assert [e.metrics["membership"] for e in storage.timeline(job.id)] == [105, 106]
        storage.flush()
        with storage.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(timeline)).scalar() == 2

    def test_deferred_write_visible_after_flush_and_after_close(
        self, storage: Storage, url: str
    ) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        storage.save_progress(replace(job, checks=1), entry(job.id, 2, 100), snap(2, 100))
        assert storage.last_entry(job.id, "2025-06") is not None
        storage.flush()
        assert storage.pending_writes() == 0
        storage.save_progress(replace(job, checks=2), entry(job.id, 3, 101), snap(3, 101))
        storage.close()
        reopened = open_storage(StorageSettings(db_url=url, mode="naive"))
        try:
            assert reopened.get_job(job.id).checks == 2
            assert [e.as_of.day for e in reopened.timeline(job.id)] == [2, 3]
            assert reopened.month_end_snapshots("2025-06")["42"].metrics["membership"] == 101
        finally:
            reopened.close()

    def test_month_end_snapshot_only_replaced_by_strictly_newer_same_month(
        self, storage: Storage
    ) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        storage.save_progress(job, None, snap(5, 100))
        storage.save_progress(job, None, snap(4, 90))  # older
        storage.save_progress(job, None, snap(5, 95))  # same as-of: not strictly newer
        storage.save_progress(job, None, snap(9, 70, month="2025-07"))  # next month's data
        final = storage.month_end_snapshots("2025-06")["42"]
        assert (final.as_of, final.metrics["membership"]) == (date(2025, 7, 5), 100)
        storage.save_progress(job, None, snap(6, 101))
        assert storage.month_end_snapshots("2025-06")["42"].metrics["membership"] == 101

    def test_last_entry_ignores_next_month_data(self, storage: Storage) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        storage.save_progress(job, entry(job.id, 5, 100), None)
        day = date(2025, 7, 6)
        note = TimelineEntry(job.id, day, NOW, "2025-07", {}, (), False, "closing over")
        storage.save_progress(job, note, None)
        last = storage.last_entry(job.id, "2025-06")
        assert last is not None and last.as_of == date(2025, 7, 5)

    def test_an_entry_keeps_its_warnings_and_none_are_stored_as_null(
        self, storage: Storage, url: str
    ) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        warned = replace(entry(job.id, 2, 100), warnings=("a.csv: code 'H'", 'b "quoted"'))
        storage.save_progress(job, warned, None)
        storage.save_progress(job, entry(job.id, 3, 101), None)
        assert [e.warnings for e in storage.timeline(job.id)] == [warned.warnings, ()]
        storage.flush()
        with storage.engine.connect() as conn:
            stored = conn.execute(select(timeline.c.warnings).order_by(timeline.c.as_of)).all()
        assert [w for (w,) in stored] == [json.dumps(list(warned.warnings)), None]
        other = open_storage(StorageSettings(db_url=url, mode="naive"))
        try:
            assert [e.warnings for e in other.timeline(job.id)] == [warned.warnings, ()]
            last = other.last_entry(job.id, "2025-06")
            assert last is not None and last.warnings == ()
        finally:
            other.close()

    def test_timeline_warnings_of_many_jobs_queued_entries_on_top(self, storage: Storage) -> None:
        one, two, quiet = storage.create_run("2025-06", ["1", "2", "3"], mode=self.mode, source="s")
        for job, day, warnings in ((one, 3, ("c",)), (one, 2, ("a", "b")), (two, 2, ("d",))):
            storage.save_progress(job, replace(entry(job.id, day, 1), warnings=warnings), None)
        storage.save_progress(quiet, entry(quiet.id, 2, 1), None)
        ids = [one.id, two.id, quiet.id]
        assert storage.timeline_warnings(ids) == {one.id: ("a", "b", "c"), two.id: ("d",)}
        storage.flush()
        assert storage.timeline_warnings(ids) == {one.id: ("a", "b", "c"), two.id: ("d",)}
        storage.save_progress(two, entry(two.id, 2, 2), None)  # a re-check without them
        assert storage.timeline_warnings(ids) == {one.id: ("a", "b", "c")}
        assert storage.timeline_warnings([two.id, quiet.id]) == {}

    def test_cached_values_are_immutable(self, storage: Storage) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        storage.save_progress(job, entry(job.id, 2, 100), None)
        got = storage.timeline(job.id)[0]
        with pytest.raises(TypeError):
            got.metrics["membership"] = 0  # type: ignore[index]
        assert storage.timeline(job.id)[0].metrics["membership"] == 100

    def test_bulk_timelines_match_single_reads(self, storage: Storage) -> None:
        created = storage.create_run(
            "2025-06", [str(i) for i in range(1, 30)], mode=self.mode, source="s"
        )
        for j in created:
            storage.save_progress(j, entry(j.id, 2, j.id), None)
        storage.flush()
        bulk = storage.timelines([j.id for j in created])
        assert all(bulk[j.id] == storage.timeline(j.id) for j in created)
        assert {bulk[j.id][0].metrics["membership"] for j in created} == {j.id for j in created}

    def test_bulk_timelines_of_jobs_whose_rows_span_fetch_batches(self, storage: Storage) -> None:
        created = storage.create_run("2025-06", ["1", "2", "3"], mode=self.mode, source="s")
        for day in range(60):  # 180 rows, read 100 at a time: the second job's are split
            for j in created:
                written = entry(j.id, 1, j.id * 1000 + day)
                as_of = date(2025, 7, 1) + timedelta(days=day)
                storage.save_progress(j, replace(written, as_of=as_of), None)
        storage.flush()
        bulk = storage.timelines([j.id for j in created])
        for j in created:
            got = bulk[j.id]
            assert got == storage.timeline(j.id)
            assert len(got) == 60 and {e.job_id for e in got} == {j.id}
            assert [e.metrics["membership"] for e in got] == [j.id * 1000 + d for d in range(60)]

    def test_timestamps_with_any_offset_come_back_equal_and_aware(
        self, storage: Storage, url: str
    ) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        plus_two = timezone(timedelta(hours=2))
        done = datetime(2025, 7, 9, 23, 30, 15, 250_000, tzinfo=plus_two)
        job = storage.transition(replace(job, completed_at=done, final_as_of=date(2025, 7, 8)))
        checked = datetime(2025, 7, 3, 12, 0, tzinfo=UTC)  # no microseconds
        storage.save_progress(job, replace(entry(job.id, 2, 100), checked_at=checked), None)
        storage.flush()
        other = open_storage(StorageSettings(db_url=url, mode="naive"))
        try:
            got = other.get_job(job.id)
            (stored,) = other.timeline(job.id)
        finally:
            other.close()
        assert got.completed_at == done and got.completed_at.utcoffset() is not None
        assert got.created_at == job.created_at and got.created_at.utcoffset() is not None
        assert got.final_as_of == date(2025, 7, 8)
        assert stored.checked_at == checked and stored.checked_at.utcoffset() is not None

    def test_metrics_changes_and_dates_round_trip(self, storage: Storage, url: str) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode=self.mode, source="sim")
        metrics = {"membership": 1234, "total_payments": 5678.25, "dcp_goals": 0, "a b": -1.5}
        changes = (
            MetricChange("membership", 1230, 1234, True),
            MetricChange("total_payments", 5600.5, 5678.25, False),
        )
        written = TimelineEntry(
            job.id, date(2025, 7, 4), NOW, None, metrics, changes, True, "note \u00e9"
        )
        significant = (date(2025, 7, 2), date(2025, 7, 4))
        storage.save_progress(replace(job, significant_dates=significant), written, None)
        storage.flush()
        other = open_storage(StorageSettings(db_url=url, mode="naive"))
        try:
            assert other.timeline(job.id) == (written,)
            assert other.timelines([job.id]) == {job.id: (written,)}
            assert other.get_job(job.id).significant_dates == significant
        finally:
            other.close()


class TestNaiveStorage(StorageContract):
    mode = "naive"

    def test_every_write_commits_at_once(self, storage: Storage) -> None:
        (job,) = storage.create_run("2025-06", ["42"], mode="naive", source="sim")
        storage.save_progress(job, entry(job.id, 2, 100), None)
        assert storage.pending_writes() == 0


class TestOptimizedStorage(StorageContract):
    mode = "optimized"

    def test_writes_wait_for_the_size_trigger(self, url: str) -> None:
        s = open_storage(
            StorageSettings(db_url=url, mode="optimized", batch_size=3, max_write_delay_ms=60_000)
        )
        try:
            (job,) = s.create_run("2025-06", ["42"], mode="optimized", source="sim")
            s.save_progress(job, entry(job.id, 2, 100), None)  # entry + job = 2 pending
            assert s.pending_writes() == 2
            s.save_progress(job, entry(job.id, 3, 101), None)  # 3 pending: the flusher writes
            assert _eventually(lambda: s.pending_writes() == 0)
            reader = open_storage(StorageSettings(db_url=url, mode="naive"))
            assert len(reader.timeline(job.id)) == 2
            reader.close()
        finally:
            s.close()

    def test_a_writer_far_ahead_of_a_failing_flusher_flushes_itself_and_sees_the_error(
        self, url: str
    ) -> None:
        s = open_storage(
            StorageSettings(db_url=url, mode="optimized", batch_size=2, max_write_delay_ms=60_000)
        )
        try:
            (job,) = s.create_run("2025-06", ["42"], mode="optimized", source="sim")
            with s.engine.connect() as conn:  # every flush fails: the table is gone
                conn.exec_driver_sql("ALTER TABLE timeline RENAME TO timeline_away")
                conn.commit()
            days: list[date] = []
            inline = INLINE_FLUSH_FACTOR * 2  # pending writes: the entries and the job
            with pytest.raises(StorageError, match="storage flush"):
                for n in range(2 * inline):
                    days.append(date(2025, 7, 1) + timedelta(days=n))
                    s.save_progress(job, replace(entry(job.id, 2, n), as_of=days[-1]), None)
            # Not before: the flusher's tries (from 2 pending on) failed quietly. (A try
            # under way holds writes that the count leaves out, so it may come later.)
            assert len(days) >= inline - 1
            with s.engine.connect() as conn:
                conn.exec_driver_sql("ALTER TABLE timeline_away RENAME TO timeline")
                conn.commit()
            s.flush()
            assert s.pending_writes() == 0
            assert [e.as_of for e in s.timeline(job.id)] == days  # nothing dropped
        finally:
            s.close()

    def test_failed_flush_keeps_writes_queued(self, url: str, tmp_path: Path) -> None:
        s = open_storage(StorageSettings(db_url=url, mode="optimized", batch_size=1000))
        (job,) = s.create_run("2025-06", ["42"], mode="optimized", source="sim")
        s.save_progress(job, entry(job.id, 2, 100), None)
        with s.engine.connect() as conn:  # make the flush fail: the table is gone
            conn.exec_driver_sql("ALTER TABLE timeline RENAME TO timeline_away")
            conn.commit()
        with pytest.raises(Exception, match="storage flush"):
            s.flush()
        assert s.pending_writes() == 2
        with s.engine.connect() as conn:
            conn.exec_driver_sql("ALTER TABLE timeline_away RENAME TO timeline")
            conn.commit()
        assert s.flush() == 2
        assert len(s.timeline(job.id)) == 1
        s.close()


def test_sqlite_stores_iso_text_in_utc(tmp_path: Path) -> None:
    s = open_storage(StorageSettings(db_url=f"sqlite:///{tmp_path / 'r.db'}", mode="naive"))
    try:
        (job,) = s.create_run("2025-06", ["42"], mode="naive", source="sim")
        local = datetime(2025, 7, 3, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
        s.save_progress(job, replace(entry(job.id, 2, 100), checked_at=local), None)
        with s.engine.connect() as conn:
            raw = conn.exec_driver_sql("SELECT as_of, checked_at, significant FROM timeline").one()
        (stored,) = s.timeline(job.id)
    finally:
        s.close()
    assert tuple(raw) == ("2025-07-02", "2025-07-03T12:00:00.000005+00:00", 1)
    assert stored.significant is True


def test_unreadable_stored_metrics_are_an_error_that_names_the_job(tmp_path: Path) -> None:
    s = open_storage(StorageSettings(db_url=f"sqlite:///{tmp_path / 'r.db'}", mode="naive"))
    try:
        (job,) = s.create_run("2025-06", ["42"], mode="naive", source="sim")
        s.save_progress(job, entry(job.id, 2, 100), None)
        with s.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE timeline SET metrics = '{}, {}'")
        with pytest.raises(StorageError, match=f"timeline metrics of job {job.id} are not JSON"):
            s.timeline(job.id)
    finally:
        s.close()


def test_date_and_naive_timestamp_binds_on_sqlite() -> None:
    dialect = sqlite.dialect()
    as_date = ISODate().bind_processor(dialect)
    as_utc = UTCDateTime().bind_processor(dialect)
    assert as_date(datetime(2025, 7, 1, 23, 59)) == "2025-07-01" and as_date(None) is None
    assert as_utc(datetime(2025, 7, 1, 9, 30)) == "2025-07-01T09:30:00+00:00"  # naive: UTC
    assert as_utc(None) is None
    # dates are formatted once and remembered: a datetime of the same day is its own key
    assert as_date(date(2025, 7, 1)) == "2025-07-01" == as_date(datetime(2025, 7, 1, 5))


@given(
    st.datetimes(
        datetime(1900, 1, 1),
        datetime(2200, 1, 1),
        timezones=st.one_of(st.none(), st.timezones()),
        allow_imaginary=False,
    ),
)
def test_timestamps_bind_as_their_utc_isoformat(value: datetime) -> None:
    as_utc = UTCDateTime().bind_processor(sqlite.dialect())
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    assert as_utc(value) == utc.isoformat()
    assert datetime.fromisoformat(as_utc(value)) == utc


_METRICS = st.dictionaries(
    st.text(), st.one_of(st.floats(), st.integers(), st.booleans(), st.none())
)


@given(_METRICS, st.lists(st.tuples(st.text(), st.floats(), st.floats(), st.booleans())))
def test_metrics_and_changes_are_written_as_json_dumps_writes_them(
    metrics: dict[str, float], changes: list[tuple[str, float, float, bool]]
) -> None:
    assert to_json(metrics) == json.dumps(metrics, sort_keys=True)
    assert to_json([list(c) for c in changes]) == json.dumps([list(c) for c in changes])
    with pytest.raises(TypeError, match="not JSON serializable"):
        to_json({"membership": object()})


def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Whether ``condition`` holds within ``timeout_s`` (for the flusher thread's work)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _deferred(url: str, *, batch_size: int, max_delay_ms: int) -> tuple[Storage, Deferred]:
    """Optimized storage built from its parts, with its write policy at hand."""
    database = Database(url)
    writes = Deferred(database, batch_size=batch_size, max_delay_ms=max_delay_ms)
    cache = ReadCache(enabled=True, max_size=1000, index_timeout_ms=30_000)
    jobs = CachedJobStore(SqlJobStore(database, writes), writes, cache)
    return Storage(database=database, writes=writes, jobs=jobs, cache=cache), writes


def test_reads_during_a_background_flush_see_its_writes_and_cache_nothing_stale(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    s, writes = _deferred(url, batch_size=2, max_delay_ms=60_000)
    try:
        (job,) = s.create_run("2025-06", ["42"], mode="optimized", source="sim")
        assert s.get_job(job.id).checks == 0 and s.timeline(job.id) == ()  # cached as they are
        s.jobs(run_id=job.run_id)
        blocker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the flusher's commit waits for this writer
        try:
            s.save_progress(replace(job, checks=1), entry(job.id, 2, 100), None)  # 2: flush
            assert _eventually(writes.flushing)  # the flush is under way, waiting
            assert s.get_job(job.id).checks == 1
            assert [e.as_of.day for e in s.timeline(job.id)] == [2]
            assert [j.checks for j in s.jobs(run_id=job.run_id)] == [1]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert _eventually(lambda: s.pending_writes() == 0)
        assert s.get_job(job.id).checks == 1  # from the database, not a cached old row
        assert [e.as_of.day for e in s.timeline(job.id)] == [2]
        assert [j.checks for j in s.jobs(run_id=job.run_id)] == [1]
    finally:
        s.close()


@pytest.mark.parametrize("cached", [2, 10])  # fewer / more cache entries than written jobs
def test_a_flush_drops_from_the_cache_only_the_jobs_it_wrote(tmp_path: Path, cached: int) -> None:
    url = f"sqlite:///{tmp_path / 'recon.db'}"
    s = open_storage(StorageSettings(db_url=url, mode="optimized", max_write_delay_ms=60_000))
    try:
        run = s.create_run("2025-06", [str(d) for d in range(10)], mode="optimized", source="sim")
        for job in run[-cached:]:
            s.get_job(job.id), s.timeline(job.id)
        written = run[-6:-1]  # five jobs, among them the next to last (always cached)
        for job in written:
            s.save_progress(replace(job, checks=1), entry(job.id, 2, 100), None)
        s.flush()
        hits = s.cache_stats().hits
        for job in run[-cached:]:
            s.get_job(job.id), s.timeline(job.id)
        kept = [j for j in run[-cached:] if j not in written]
        assert s.cache_stats().hits - hits == 2 * len(kept)  # the written jobs were loaded again
        assert all(s.get_job(j.id).checks == 1 and len(s.timeline(j.id)) == 1 for j in written)
    finally:
        s.close()


def test_a_job_built_from_stored_fields_is_the_job_its_init_makes() -> None:
    values = (7, 1, "42", "2025-06", JobStatus.ACTIVE, Phase.STABILIZING, None, "boom", NOW,
              None, date(2025, 7, 2), date(2025, 7, 3), 3, 1, 2, 0, date(2025, 7, 1), 1,
              (date(2025, 7, 1),))  # fmt: skip
    job = Job.from_stored(*values)
    assert job == Job(*values) and hash(job) == hash(Job(*values))
    assert replace(job, checks=4).checks == 4 and job.checks == 3
    with pytest.raises(ValueError):
        Job.from_stored(*values[:-1])  # a field short


def test_an_entry_built_from_stored_fields_is_the_entry_its_init_makes() -> None:
    change = (MetricChange("membership", 99, 100, True),)
    values = (7, date(2025, 7, 2), NOW, "2025-06", {"membership": 100}, change, True, "n", ("w",))
    stored = TimelineEntry.from_stored(*values)
    assert stored == TimelineEntry(*values) and repr(stored) == repr(TimelineEntry(*values))
    assert not hasattr(stored, "__dict__")  # slots: every field set, nothing else
    with pytest.raises(TypeError):
        stored.metrics["membership"] = 0  # type: ignore[index]
    assert replace(stored, note="m").note == "m" and stored.note == "n"


class _FlushesBeforeEachQueueRead(Deferred):
    """A flusher at its worst moment: it commits everything just before a read
    looks at the queue (a real Deferred; only the timing is forced)."""

    def queued(self, kind: Any) -> dict[Hashable, Any]:
        self.flush()
        return super().queued(kind)


def test_a_flush_between_a_reads_two_halves_loses_no_entry(tmp_path: Path) -> None:
    """Reads take the queue before the database rows: an entry the flusher commits
    in between is then in the rows. Read the other way round, it was in neither."""
    database = Database(f"sqlite:///{tmp_path / 'race.db'}")
    writes = _FlushesBeforeEachQueueRead(database, batch_size=1_000, max_delay_ms=60_000)
    store = SqlJobStore(database, writes)
    try:
        (job,) = store.create_run("2025-06", ["42"], mode="optimized", source="sim")
        store.save_progress(job, entry(job.id, 2, 100), None)
        assert store.last_entry(job.id, "2025-06") == entry(job.id, 2, 100)
        store.save_progress(job, entry(job.id, 3, 101), None)
        assert [e.as_of for e in store.timeline(job.id)] == [date(2025, 7, 2), date(2025, 7, 3)]
        store.save_progress(job, entry(job.id, 4, 102), None)
        assert len(store.timelines([job.id])[job.id]) == 3
        assert writes.pending() == 0, "the forced flushes really ran"
    finally:
        writes.close()
        database.close()
