"""A lease's holder side (heartbeat, loss, release) on a real database with a fake
clock, and the console's month leases between two consoles on one database; each
test on SQLite and on PostgreSQL (``db_url``, tests/databases.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from engine import settings as settings_mod
from engine.app.console import Console, open_storage
from engine.app.lease import Lease, LeaseHeld, wait_until_free
from engine.app.month_lease import MONTH_LEASE
from engine.clock import FakeClock
from engine.domain.models import JobStatus
from engine.errors import ConflictError, StorageError
from engine.settings import Settings, StorageSettings
from engine.store.leases import Holder, LeaseRecord, SqlLeases
from engine.store.storage import Storage

NAME = "month:2025-06"
TTL = 30.0
MONTH = "2025-03"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    s = open_storage(StorageSettings(db_url=db_url, mode="naive"))
    yield s
    s.close()


@pytest.fixture
def store(storage: Storage, clock: FakeClock) -> SqlLeases:
    return SqlLeases(storage, clock=clock)


def test_heartbeats_keep_the_lease_and_others_are_told_who_holds_it(
    store: SqlLeases, clock: FakeClock
) -> None:
    lease = Lease(store, NAME, ttl_s=TTL)
    assert lease.interval_s == TTL / 3
    since = lease.acquire().acquired_at
    other = Lease(store, NAME, ttl_s=TTL)
    for _ in range(6):  # two ttls, one beat every ttl/3
        clock.advance(lease.interval_s)
        assert lease.tick()
        with pytest.raises(LeaseHeld) as refused:
            other.acquire()
    assert refused.value.record.holder == lease.holder
    assert isinstance(refused.value, ConflictError)  # API 409, CLI exit 2
    host, pid = lease.holder.host, lease.holder.pid
    assert f"worked by {host} pid {pid} since {since:%Y-%m-%d %H:%M:%S} UTC" in str(refused.value)


def test_a_lease_of_an_exited_process_on_this_host_is_taken_at_once(store: SqlLeases) -> None:
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    me = Holder.this_process()
    dead = Holder(f"{me.host}:dead", me.host, int(exited.stdout))
    assert store.acquire(NAME, dead, TTL).holder == dead  # as if it was killed holding it
    elsewhere = Holder("other-host:1", "other-host", int(exited.stdout))
    assert store.acquire(f"{NAME}-2", elsewhere, TTL).holder == elsewhere

    assert Lease(store, NAME, ttl_s=TTL).acquire().holder != dead  # no wait for the ttl
    with pytest.raises(LeaseHeld):  # another host's process: only its ttl frees it
        Lease(store, f"{NAME}-2", ttl_s=TTL).acquire()


def test_missed_heartbeats_lose_the_lease_and_report_it_once(
    store: SqlLeases, clock: FakeClock
) -> None:
    reports: list[LeaseRecord | None] = []
    lease = Lease(store, NAME, ttl_s=TTL, on_lost=reports.append)
    lease.acquire()
    clock.advance(TTL)  # the process stalled: no beat for a whole ttl
    taker = Lease(store, NAME, ttl_s=TTL)
    taken = taker.acquire()
    assert not lease.tick() and lease.lost
    assert not lease.tick(), "lost stays lost"
    assert reports == [taken]
    lease.release()  # stops the heartbeat, leaves the new holder alone
    assert store.holder(NAME) == taken


def test_release_frees_the_lease_at_once(store: SqlLeases) -> None:
    lease = Lease(store, NAME, ttl_s=TTL)
    lease.acquire()
    lease.release()
    assert store.holder(NAME) is None
    assert Lease(store, NAME, ttl_s=TTL).acquire()


def test_a_failing_database_is_retried_at_the_next_beat(store: SqlLeases, clock: FakeClock) -> None:
    class Flaky:
        """The store, with its next renewal refused."""

        failures = 1

        def acquire(self, name: str, holder: Holder, ttl_s: float) -> LeaseRecord:
            return store.acquire(name, holder, ttl_s)

        def renew(self, name: str, holder: Holder, ttl_s: float) -> bool:
            if self.failures:
                self.failures -= 1
                raise StorageError("lease_renew", "database is locked", transient=True)
            return store.renew(name, holder, ttl_s)

        def release(self, name: str, holder: Holder) -> bool:
            return store.release(name, holder)

        def holder(self, name: str) -> LeaseRecord | None:
            return store.holder(name)

    lease = Lease(Flaky(), NAME, ttl_s=TTL)
    lease.acquire()
    clock.advance(lease.interval_s)
    assert lease.tick() and not lease.lost  # refused: try again
    clock.advance(lease.interval_s)
    assert lease.tick()
    held = store.holder(NAME)
    assert held is not None and held.heartbeat_at == clock.now()


def test_the_heartbeat_thread_renews_and_stops_cleanly(storage: Storage) -> None:
    renewed = threading.Event()

    class Watched(SqlLeases):
        def renew(self, name: str, holder: Holder, ttl_s: float) -> bool:
            done = super().renew(name, holder, ttl_s)
            renewed.set()
            return done

    store = Watched(storage)  # the real clock: the thread beats every ttl/3 of real time
    lease = Lease(store, NAME, ttl_s=0.3)
    first = lease.acquire()
    lease.start()
    assert renewed.wait(30)
    held = store.holder(NAME)
    assert held is not None and held.heartbeat_at > first.heartbeat_at
    lease.release()
    assert not any(t.name == f"lease {NAME}" for t in threading.enumerate())
    assert store.holder(NAME) is None


def test_wait_until_free_waits_out_a_dead_holder(store: SqlLeases, clock: FakeClock) -> None:
    dead = Lease(store, NAME, ttl_s=TTL)
    dead.acquire()  # and never beats again
    seen: list[LeaseRecord] = []
    wait_until_free(store, NAME, clock=clock, poll_s=1.0, on_wait=seen.append)
    assert [r.holder for r in seen] == [dead.holder], "one line per holder"
    assert clock.now() >= seen[0].expires_at
    assert Lease(store, NAME, ttl_s=TTL).acquire()


# --- the console's month leases ------------------------------------------------------------


def _settings(db_url: str) -> Settings:
    return settings_mod.load(env={}, overrides={"storage": {"db_url": db_url}})


def test_a_month_is_worked_by_one_console_at_a_time(db_url: str) -> None:
    first, second = Console(_settings(db_url)), Console(_settings(db_url))
    try:
        first.start_batch(MONTH, districts=["1", "2"])
        with pytest.raises(LeaseHeld) as refused:
            second.start_batch(MONTH, districts=["1", "2"])
        assert refused.value.record.holder == first.leases.holder
        assert str(refused.value).startswith(f"month='{MONTH}': worked by ")
        assert second.storage.jobs(month=MONTH) == first.storage.jobs(month=MONTH)
        first.batch.run(until_idle=True)  # the batch ends: the month is free
        assert second.leases.held_by(MONTH) is None
        assert second.continue_month(MONTH) is None, "closed meanwhile: nothing left"
        second.start_batch(MONTH, districts=["1"])  # a new run, as before
        assert first.leases.held_by(MONTH) is not None
        assert len(second.storage.runs(MONTH)) == 2
    finally:
        first.close()
        second.close()


def test_closing_a_console_frees_its_months(db_url: str) -> None:
    first = Console(_settings(db_url))
    try:
        first.start_batch(MONTH, districts=["1", "2"])
        first.start_batch("2025-04", districts=["1"])
    finally:
        first.close()  # interrupted: the jobs stay unfinished and the months free
    second = Console(_settings(db_url))
    try:
        assert second.leases.held_by(MONTH) is None
        result = second.continue_month(MONTH)
        assert result is not None
        second.batch.run(until_idle=True)
        assert {j.status for j in second.storage.jobs(month=MONTH)} == {JobStatus.COMPLETED}
        assert len(second.storage.runs(MONTH)) == 1, "the interrupted run continued"
    finally:
        second.close()


def test_a_console_that_lost_its_month_stops_and_leaves_the_jobs_alone(db_url: str) -> None:
    clock = FakeClock()
    stalled = Console(_settings(db_url), clock=clock)
    taker = Console(_settings(db_url), clock=clock)
    try:
        batch_id = stalled.start_batch(MONTH, districts=["1", "2"]).batch_id
        clock.advance(stalled.leases.ttl_s)  # no heartbeat for a whole ttl
        taken = taker.start_batch(MONTH, districts=["1", "2"])
        stalled.leases.tick()  # its next beat finds the month taken
        assert stalled.leases.lost(MONTH)
        stalled.batch.run(until_idle=True)
        assert stalled.batch.progress(batch_id).cancelled == 2
        taker.batch.run(until_idle=True)
        jobs = taker.storage.jobs(month=MONTH)
        assert {j.status for j in jobs} == {JobStatus.COMPLETED}, "not cancelled by the loser"
        assert taker.batch.progress(taken.batch_id).succeeded == 2
    finally:
        stalled.close()
        taker.close()
    after = open_storage(_settings(db_url).storage)
    try:
        assert after.jobs(month=MONTH) == jobs, "closing the loser wrote nothing over them"
    finally:
        after.close()


def test_a_batch_cancelled_by_another_console_stops_where_it_runs(db_url: str) -> None:
    """`recon batch cancel`, the API or a dashboard of another process: the console that
    runs the month stops its items and cancels their jobs, the batch stays recorded
    cancelled, and no item is taken for skipped."""
    slow = _settings(db_url).with_values("source", latency_ms=50)
    first, second = Console(slow), Console(_settings(db_url))
    districts = [str(n) for n in range(1, 13)]
    try:
        batch_id = first.start_batch(MONTH, districts=districts).batch_id
        started = threading.Event()
        first.batch.listen(lambda e: e["type"] == "started" and started.set())
        first.batch.start()
        assert started.wait(30)
        second.batch.cancel(batch_id)  # not a batch of its own: the owner is asked
        first.batch.run(until_idle=True)  # returns once the batch has ended there
        detail = second.batch.batch_detail(batch_id)  # as stored
        counts = {s: sum(i.status == s for i in detail.items) for s in ("succeeded", "cancelled")}
        assert detail.info.status == "cancelled"
        assert counts["cancelled"] > 0 and sum(counts.values()) == len(districts), "none skipped"
        first.storage.flush()  # its deferred writes of the jobs it cancelled
        jobs = second.storage.jobs(month=MONTH)
        assert sum(j.status == JobStatus.COMPLETED for j in jobs) == counts["succeeded"]
        assert sum(j.status == JobStatus.CANCELLED for j in jobs) == counts["cancelled"]
    finally:
        first.close()
        second.close()


def test_the_lease_of_a_month_is_named_after_it() -> None:
    assert MONTH_LEASE.format(month=MONTH) == "month:2025-03"
