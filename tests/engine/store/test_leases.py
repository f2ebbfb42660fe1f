"""The lease contract on a real SQLite file and on a real PostgreSQL server, with a
fake clock: acquire, renew, release and expiry, and one winner among racing claimants."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.app.console import open_storage
from engine.clock import FakeClock
from engine.settings import StorageSettings
from engine.store.leases import Holder, SqlLeases
from engine.store.pg import scratch_database
from engine.store.storage import Storage

NAME = "month:2025-06"
TTL = 30.0
A = Holder("host-a:1:aaaa", "host-a", 1)
B = Holder("host-b:2:bbbb", "host-b", 2)


class LeasesContract:
    """What every backend promises; ``url`` is a fresh database."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def storage(self, url: str) -> Iterator[Storage]:
        s = open_storage(StorageSettings(db_url=url, mode="naive"))
        yield s
        s.close()

    @pytest.fixture
    def store(self, storage: Storage, clock: FakeClock) -> SqlLeases:
        return SqlLeases(storage, clock=clock)

    def test_a_free_lease_is_taken_and_says_by_whom(
        self, store: SqlLeases, clock: FakeClock
    ) -> None:
        assert store.holder(NAME) is None
        got = store.acquire(NAME, A, TTL)
        assert got.holder == A and got.name == NAME
        assert got.acquired_at == got.heartbeat_at == clock.now()
        assert got.expires_at == clock.now() + timedelta(seconds=TTL)
        assert store.holder(NAME) == got
        assert got.describe() == "host-a pid 1 since 2025-07-01 00:00:00 UTC"

    def test_a_held_lease_is_refused_with_its_holder(
        self, store: SqlLeases, clock: FakeClock
    ) -> None:
        first = store.acquire(NAME, A, TTL)
        clock.advance(TTL - 1)
        refused = store.acquire(NAME, B, TTL)
        assert refused == first, "B is told who holds it, and the lease is unchanged"
        assert store.holder(NAME) == first

    def test_taking_it_again_renews_and_keeps_since(
        self, store: SqlLeases, clock: FakeClock
    ) -> None:
        first = store.acquire(NAME, A, TTL)
        clock.advance(10)
        again = store.acquire(NAME, A, TTL)
        assert again.holder == A and again.acquired_at == first.acquired_at
        assert again.expires_at == clock.now() + timedelta(seconds=TTL)

    def test_renew_keeps_it_past_the_first_ttl(self, store: SqlLeases, clock: FakeClock) -> None:
        store.acquire(NAME, A, TTL)
        for _ in range(5):
            clock.advance(TTL / 3)
            assert store.renew(NAME, A, TTL)
        assert store.acquire(NAME, B, TTL).holder == A
        held = store.holder(NAME)
        assert held is not None and held.heartbeat_at == clock.now()

    def test_an_expired_lease_is_taken_over(self, store: SqlLeases, clock: FakeClock) -> None:
        store.acquire(NAME, A, TTL)
        clock.advance(TTL)  # expires_at <= now: expired
        assert store.holder(NAME) is None
        taken = store.acquire(NAME, B, TTL)
        assert taken.holder == B and taken.acquired_at == clock.now()
        assert not store.renew(NAME, A, TTL), "A lost it: its heartbeat says so"
        assert not store.release(NAME, A), "and it cannot release B's lease"
        assert store.holder(NAME) == taken

    def test_release_frees_it_at_once(self, store: SqlLeases) -> None:
        store.acquire(NAME, A, TTL)
        assert store.release(NAME, A)
        assert store.holder(NAME) is None
        assert not store.release(NAME, A)
        assert store.acquire(NAME, B, TTL).holder == B

    def test_leases_are_independent_by_name(self, store: SqlLeases) -> None:
        assert store.acquire(NAME, A, TTL).holder == A
        assert store.acquire("month:2025-07", B, TTL).holder == B

    def test_one_winner_among_racing_claimants(self, url: str, clock: FakeClock) -> None:
        """Eight storages (eight connection pools, as eight processes) ask at once."""
        claimants = [Holder(f"h:{n}:x", "h", n) for n in range(8)]
        storages = [open_storage(StorageSettings(db_url=url, mode="naive")) for _ in claimants]
        start = threading.Barrier(len(claimants))
        won: list[Holder] = []

        def claim(storage: Storage, holder: Holder) -> None:
            start.wait()
            if SqlLeases(storage, clock=clock).acquire(NAME, holder, TTL).holder == holder:
                won.append(holder)

        threads = [
            threading.Thread(target=claim, args=pair)
            for pair in zip(storages, claimants, strict=True)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for s in storages:
                s.close()
        assert len(won) == 1


class TestSqliteLeases(LeasesContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'leases.db'}"


@pytest.fixture
def server(pg_server: str) -> str:
    return pg_server  # the session's PostgreSQL server


class TestPostgresLeases(LeasesContract):
    @pytest.fixture
    def url(self, server: str) -> Iterator[str]:
        with scratch_database(server, prefix="recon_lease") as url:
            yield url
