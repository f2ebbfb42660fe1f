"""Webhook delivery to a real receiver on 127.0.0.1: retried with backoff on a fake clock,
pending events delivered after a restart, checks never waiting on a dead webhook."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.app.console import Console
from engine.clock import FakeClock
from engine.notify.notifier import Notifier
from engine.settings import NotifySettings, ReconSettings, Settings
from engine.store.database import Database
from engine.store.events import Event, EventKind, NewEvent, SqlEventStore
from tests.engine.notify.receiver import closed_port, receiving

START = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'notify.db'}")
    yield database
    database.close()


def notifier(db: Database, clock: FakeClock, url: str) -> Notifier:
    settings = NotifySettings(webhook_url=url, retry_delay_ms=1_000, timeout_s=5)
    return Notifier(
        settings=settings,
        recon=ReconSettings(),
        store=SqlEventStore(db),
        clock=clock,
        month_check=lambda month: None,
    )


def job_failed(job_id: int = 7) -> NewEvent:
    return NewEvent(
        key=f"job-failed:{job_id}",
        kind=EventKind.JOB_FAILED,
        month="2025-06",
        district="42",
        job_id=job_id,
        payload={"error": "boom"},
    )


def test_an_event_reaches_the_webhook_once_and_is_marked_delivered(db: Database) -> None:
    clock = FakeClock(START)
    with receiving() as (url, receiver):
        n = notifier(db, clock, url)
        assert n.emit(job_failed()) and not n.emit(job_failed())  # once per key
        assert n.run_once().delivered == 1
        assert n.run_once().delivered == 0
        n.close()
    [body] = receiver.bodies
    assert body["kind"] == "job-failed" and body["payload"] == {"error": "boom"}
    assert (body["month"], body["district"], body["job_id"], body["attempt"]) == (
        "2025-06",
        "42",
        7,
        1,
    )
    [event] = n.events()
    assert event.delivered_at == START and event.attempts == 1


def test_a_receiver_down_for_a_while_gets_the_events_after_it_comes_back(db: Database) -> None:
    clock = FakeClock(START)
    port = closed_port()
    n = notifier(db, clock, f"http://127.0.0.1:{port}/hook")
    n.emit(job_failed())
    assert n.run_once().failed == 1
    [event] = n.events()
    assert event.attempts == 1 and not event.delivered
    assert "ConnectError" in (event.last_error or "") and "/hook" not in (event.last_error or "")
    assert event.next_attempt_at == START + timedelta(seconds=1)  # retryDelayMs
    assert n.run_once().failed == 0  # not due yet: no attempt
    clock.advance(1)
    assert n.run_once().failed == 1
    [event] = n.events()
    assert event.attempts == 2 and event.next_attempt_at == clock.now() + timedelta(seconds=2)
    with receiving(port) as (_, receiver):
        clock.advance(1)
        assert n.run_once().delivered == 0  # the backoff doubled: still waiting
        clock.advance(1)
        assert n.run_once().delivered == 1
        n.close()
    assert [b["attempt"] for b in receiver.bodies] == [3]
    [event] = n.events()
    assert event.delivered and event.attempts == 3


def wait_until(done: Callable[[], bool], timeout_s: float = 30) -> None:
    """Poll the notifier's thread (real background work) until ``done()``."""
    end = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < end, "the notifier's thread did not get there"
        time.sleep(0.01)


def console(db_url: str, clock: FakeClock, webhook: str) -> Console:
    settings = Settings().with_values("storage", db_url=db_url)
    return Console(settings.with_values("notify", webhook_url=webhook), clock=clock)


def test_a_restart_delivers_what_was_pending(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'recon.db'}"
    clock = FakeClock(START)
    port = closed_port()
    first = console(db_url, clock, f"http://127.0.0.1:{port}/hook")
    first.start_batch("2025-06", districts=["1", "2"])
    first.batch.run(until_idle=True)
    first.close()  # evaluates the finished month; its last delivery pass stops at a failure
    pending = stored(db_url)
    [final] = [e for e in pending if e.kind is EventKind.MONTH_FINAL]
    assert final.payload["districts"] == 2 and final.payload["final_as_of"]
    assert not any(e.delivered for e in pending) and sum(e.attempts for e in pending) == 1

    with receiving(port) as (url, receiver):
        clock.advance(2)  # past the retry time the first process stored
        second = console(db_url, clock, url)
        second.alerts.run_once()
        second.close()
    assert sorted(b["id"] for b in receiver.bodies) == sorted(e.id for e in pending)
    assert ("month-final", "2025-06") in {(b["kind"], b["month"]) for b in receiver.bodies}
    assert all(e.delivered for e in stored(db_url))


def stored(db_url: str) -> list[Event]:
    database = Database(db_url)
    try:
        return SqlEventStore(database).find()
    finally:
        database.close()


def test_a_hanging_webhook_never_delays_checks(tmp_path: Path) -> None:
    hanging = socket.socket()  # accepts connections (backlog) and never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    url = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
    settings = Settings().with_values("storage", db_url=f"sqlite:///{tmp_path / 'recon.db'}")
    c = Console(settings.with_values("notify", webhook_url=url, timeout_s=120))
    try:
        c.start_background()
        c.alerts.emit(job_failed())
        wait_until(lambda: c.alerts.events()[0].next_attempt_at is not None)  # claimed: posting
        c.start_batch("2025-06", districts=["1", "2", "3"])
        c.batch.run(until_idle=True)  # every check, while the post hangs (120 s timeout)
        assert {j.status.value for j in c.jobs("2025-06")} == {"completed"}
        assert all(not e.delivered and e.attempts == 0 for e in c.alerts.events())
    finally:
        hanging.close()  # the post fails at once: close() does not wait for the timeout
        c.close()
