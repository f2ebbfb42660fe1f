from __future__ import annotations

import json
import math
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from engine.app.console import open_storage
from engine.batch.runner import BatchProgress, BatchRunner, ItemSpec
from engine.cancel import CancelToken
from engine.clock import FakeClock
from engine.errors import BatchError, ConfigError, ParseError, SourceError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.monitor.core import Monitor
from engine.settings import BatchSettings, MonitorSettings, StorageSettings
from engine.store.batches import SqlBatchStore
from engine.store.schema import batch_items
from engine.store.storage import Storage
from tests.engine.batch import batch_child

ROOT = Path(__file__).resolve().parents[3]
Execute = Callable[[Mapping[str, Any], CancelToken], Any]


def noop(spec: Mapping[str, Any], token: CancelToken) -> Any:
    return spec.get("n")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'recon.db'}"


@pytest.fixture
def storage(url: str) -> Iterator[Storage]:
    s = open_storage(StorageSettings(db_url=url))
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_runner(storage: Storage, clock: FakeClock) -> Iterator[Callable[..., BatchRunner]]:
    runners: list[BatchRunner] = []

    def make(
        execute: Execute = noop,
        *,
        memory: Callable[[], float] = lambda: 0.0,
        rng: random.Random | None = None,
        should_skip: Callable[[Mapping[str, Any]], bool] | None = None,
        instrument: Instrument = NO_INSTRUMENT,
        **settings: Any,
    ) -> BatchRunner:
        values = {"enable_resource_throttling": False, "timeout_ms": 1_800_000, **settings}
        runner = BatchRunner(
            BatchSettings(**values),
            store=SqlBatchStore(storage),
            execute=execute,
            should_skip=should_skip,
            clock=clock,
            memory_reader=memory,
            rng=rng,
            instrument=instrument,
        )
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def items(n: int) -> list[dict[str, int]]:
    return [{"n": i} for i in range(n)]


def adds_up(p: BatchProgress) -> bool:
    parts = (p.queued, p.running, p.retrying, p.succeeded, p.failed, p.skipped, p.cancelled)
    return sum(parts) == p.total


class Gauge:
    """An execute that counts attempts running at once; the first ``limit`` wait for each other."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.active = 0
        self.max = 0
        self.full = threading.Event()

    def __call__(self, spec: Mapping[str, Any], token: CancelToken) -> None:
        with self.lock:
            self.active += 1
            self.max = max(self.max, self.active)
            if self.active >= self.limit:
                self.full.set()
        self.full.wait(10)
        with self.lock:
            self.active -= 1


def blocking(entered: threading.Event, blocked: set[int]) -> Execute:
    """Items whose ``n`` is in ``blocked`` wait on their token (set ``entered`` first)."""

    def execute(spec: Mapping[str, Any], token: CancelToken) -> Any:
        if spec["n"] in blocked:
            entered.set()
            token.wait(30)
        return spec["n"]

    return execute


def closed_during_item(make_runner: Any, n: int) -> tuple[BatchRunner, int]:
    """A runner of three items, one at a time, closed while item ``n`` runs."""
    entered = threading.Event()
    runner = make_runner(blocking(entered, {n}), max_concurrent_jobs=1)
    batch_id: int = runner.submit(items(3)).batch_id
    runner.start()
    assert entered.wait(10)
    runner.close()
    return runner, batch_id


# --- order and concurrency --------------------------------------------------------------


def test_priority_order_ties_in_submission_order_across_batches(make_runner: Any) -> None:
    order: list[int] = []
    runner = make_runner(lambda spec, token: order.append(spec["n"]), max_concurrent_jobs=1)
    runner.submit([ItemSpec({"n": n}, p) for n, p in enumerate([1, 5, 3, 5, 0, 3])])
    runner.submit([({"n": 6}, 5), ({"n": 7}, 0)])
    runner.run()
    assert order == [1, 3, 6, 2, 5, 0, 4, 7]


def test_global_concurrency_limit_is_reached_and_never_exceeded(make_runner: Any) -> None:
    gauge = Gauge(3)
    runner = make_runner(gauge, max_concurrent_jobs=3)
    first = runner.submit(items(8))
    second = runner.submit(items(8))
    runner.run()
    assert gauge.max == 3
    assert (
        runner.progress(first.batch_id).succeeded == runner.progress(second.batch_id).succeeded == 8
    )


def test_a_batch_limit_applies_within_the_global_limit(make_runner: Any) -> None:
    gauge = Gauge(2)
    runner = make_runner(gauge, max_concurrent_jobs=4)
    result = runner.submit(items(8), config={"maxConcurrentJobs": 2})
    runner.run()
    assert result.config.max_concurrent_jobs == 2
    assert gauge.max == 2


def test_user_config_is_clamped_and_the_clamping_reported(make_runner: Any) -> None:
    runner = make_runner(max_concurrent_jobs=5)
    result = runner.submit(
        items(1),
        config={
            "maxConcurrentJobs": 50,
            "retry_attempts": -1,
            "timeoutMs": "5",
            "retryDelayMs": 200,
        },
    )
    c = result.config
    assert (c.max_concurrent_jobs, c.retry_attempts, c.timeout_ms, c.retry_delay_ms) == (
        5,
        0,
        1000,
        200,
    )
    notes = " | ".join(result.notes)
    assert "maxConcurrentJobs 50 clamped to 20" in notes
    assert "limited to the runner's 5" in notes
    assert "retryAttempts -1 clamped to 0" in notes
    assert "timeoutMs 5 clamped to 1000" in notes
    assert "retryDelayMs" not in notes
    with pytest.raises(ConfigError):
        runner.submit(items(1), config={"noSuchSetting": 1})
    with pytest.raises(ConfigError):
        runner.submit(items(1), config={"retryAttempts": "many"})
    with pytest.raises(ConfigError):
        runner.submit([])
    runner.run()


# --- retries and timeouts -------------------------------------------------------------------


def test_retry_schedule_follows_the_seeded_backoff_on_the_fake_clock(
    make_runner: Any, clock: FakeClock
) -> None:
    def flaky(spec: Mapping[str, Any], token: CancelToken) -> str:
        if len(calls) < 5:
            calls.append(clock.monotonic())
            raise SourceError("503", transient=True)
        return "ok"

    calls: list[float] = []
    runner = make_runner(flaky, rng=random.Random(7), retry_attempts=5, retry_delay_ms=10_000)
    batch_id = runner.submit(items(1)).batch_id
    runner.run()

    expected_rng = random.Random(7)
    expected = [expected_rng.uniform(0, ceiling) for ceiling in (10, 20, 40, 60, 60)]
    attempts = runner.batch_detail(batch_id).items[0].attempts
    assert [a.outcome for a in attempts] == ["transient"] * 5 + ["succeeded"]
    gaps = [
        (b.started_at - a.ended_at).total_seconds()
        for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    assert gaps == pytest.approx(expected, abs=1e-3)
    assert all("SourceError: 503" in (a.error or "") for a in attempts[:5])


def test_permanent_errors_fail_at_once_and_transient_ones_after_the_retries(
    make_runner: Any,
) -> None:
    def execute(spec: Mapping[str, Any], token: CancelToken) -> None:
        if spec["n"] == 0:
            raise ParseError("d42.csv", "no header", line=1)
        raise httpx.ConnectError("refused")

    events: list[dict[str, Any]] = []
    runner = make_runner(execute, retry_attempts=2, retry_delay_ms=100)
    runner.listen(events.append)
    batch_id = runner.submit(items(2)).batch_id
    runner.run()
    permanent, transient = runner.batch_detail(batch_id).items
    assert (permanent.status, [a.outcome for a in permanent.attempts]) == ("failed", ["permanent"])
    assert "line 1" in (permanent.error or "")
    assert (transient.status, [a.outcome for a in transient.attempts]) == (
        "failed",
        ["transient"] * 3,
    )
    kinds = Counter(e["type"] for e in events)
    assert (kinds["failed"], kinds["retried"], kinds["started"], kinds["batch_finished"]) == (
        2,
        2,
        4,
        1,
    )


def test_a_hanging_item_is_stopped_at_its_timeout_before_its_retry_starts(
    make_runner: Any, clock: FakeClock
) -> None:
    log: list[str] = []
    entered = threading.Event()

    def execute(spec: Mapping[str, Any], token: CancelToken) -> str:
        attempt = sum(1 for entry in log if entry.startswith("enter"))
        log.append(f"enter {attempt}")
        try:
            if attempt == 0:
                entered.set()
                token.wait(30)  # hangs until the runner cancels the token
            return "done"
        finally:
            log.append(f"exit {attempt}")

    runner = make_runner(execute, timeout_ms=1_000, retry_attempts=1, retry_delay_ms=100)
    batch_id = runner.submit(items(1)).batch_id
    runner.start()
    assert entered.wait(10)
    clock.advance(1.5)
    runner.run()
    assert log == ["enter 0", "exit 0", "enter 1", "exit 1"]
    item = runner.batch_detail(batch_id).items[0]
    assert item.status == "succeeded"
    first, second = item.attempts
    assert (first.outcome, second.outcome) == ("timeout", "succeeded")
    assert "ItemTimeout" in (first.error or "")
    assert (first.ended_at - first.started_at).total_seconds() >= 1.0
    assert second.started_at >= first.ended_at


# --- throttling, cancel, skip ------------------------------------------------------------------


def test_no_item_starts_while_memory_is_above_the_threshold(
    make_runner: Any, clock: FakeClock
) -> None:
    readings = 0

    def memory() -> float:
        nonlocal readings
        readings += 1
        if readings <= 3:  # each high reading takes one second of fake time
            clock.advance(1)
            return 2000.0
        return 100.0

    started_at_reading: list[int] = []
    runner = make_runner(
        lambda spec, token: started_at_reading.append(readings),
        memory=memory,
        enable_resource_throttling=True,
        memory_threshold_mb=1024,
    )
    batch_id = runner.submit(items(4)).batch_id
    runner.run()
    assert len(started_at_reading) == 4 and min(started_at_reading) >= 4
    assert runner.progress(batch_id).throttled_s == pytest.approx(2.0)
    assert runner.list_batches()[0].throttled_s == pytest.approx(2.0)


def test_cancel_batch_drops_queued_items_at_once_and_stops_the_running_one(
    make_runner: Any,
) -> None:
    entered = threading.Event()
    events: list[dict[str, Any]] = []
    runner = make_runner(blocking(entered, {0}), max_concurrent_jobs=1)
    runner.listen(events.append)
    batch_id = runner.submit(items(5)).batch_id
    runner.start()
    assert entered.wait(10)
    runner.cancel(batch_id)
    now = runner.progress(batch_id)
    assert now.queued == 0 and now.cancelled >= 4  # the running one stops soon after
    runner.run()
    final = runner.progress(batch_id)
    assert (final.cancelled, final.succeeded, final.done) == (5, 0, True)
    assert sum(e["type"] == "cancelled" for e in events) == 5
    detail = runner.batch_detail(batch_id)
    assert detail.info.status == "cancelled"
    assert [a.outcome for a in detail.items[0].attempts] == ["cancelled"]
    assert {i.status for i in detail.items} == {"cancelled"}


def test_a_batch_cancelled_by_another_process_stops_where_it_runs(
    make_runner: Any, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`recon batch cancel` in another process: the process that runs the batch drops its
    queued items and stops the running one too, and the batch stays recorded cancelled."""
    from engine.cli.core import main

    entered = threading.Event()
    runner = make_runner(blocking(entered, {0}), max_concurrent_jobs=1)
    batch_id = runner.submit(items(5)).batch_id
    runner.start()
    assert entered.wait(10)
    assert main(["--db", url, "batch", "cancel", str(batch_id)]) == 0  # not its batch
    assert "cancelled" in capsys.readouterr().out
    done = threading.Event()
    threading.Thread(target=lambda: (runner.run(), done.set()), daemon=True).start()
    assert done.wait(20), "the running process never heard of the cancel"
    detail = make_runner().batch_detail(batch_id)  # as stored
    assert detail.info.status == "cancelled"
    assert [(i.status, [a.outcome for a in i.attempts]) for i in detail.items] == [
        ("cancelled", ["cancelled"]),
        *[("cancelled", [])] * 4,
    ]


def test_cancel_one_item(make_runner: Any) -> None:
    entered = threading.Event()
    runner = make_runner(blocking(entered, {0}), max_concurrent_jobs=1)
    batch_id = runner.submit(items(4)).batch_id
    runner.start()
    assert entered.wait(10)
    assert runner.cancel_item(batch_id, 3) is True  # queued
    assert runner.progress(batch_id).cancelled == 1
    assert runner.cancel_item(batch_id, 1) is True  # running
    runner.run()
    statuses = {i.item_id: i.status for i in runner.batch_detail(batch_id).items}
    assert statuses == {1: "cancelled", 2: "succeeded", 3: "cancelled", 4: "succeeded"}
    assert runner.cancel_item(batch_id, 2) is False


def test_items_whose_job_is_completed_are_skipped(make_runner: Any) -> None:
    ran: list[int] = []
    runner = make_runner(
        lambda spec, token: ran.append(spec["n"]), should_skip=lambda spec: spec["n"] % 2 == 0
    )
    batch_id = runner.submit(items(6)).batch_id
    runner.run()
    p = runner.progress(batch_id)
    assert sorted(ran) == [1, 3, 5]
    assert (p.skipped, p.succeeded, p.percent) == (3, 3, 100.0)
    assert Counter(i.status for i in runner.batch_detail(batch_id).items) == {
        "skipped": 3,
        "succeeded": 3,
    }


# --- progress ------------------------------------------------------------------------------------


def test_progress_counters_always_add_up_while_running(make_runner: Any) -> None:
    samples: list[BatchProgress] = []
    holder: dict[str, int] = {}

    def execute(spec: Mapping[str, Any], token: CancelToken) -> None:
        if spec["n"] % 10 == 0:
            samples.append(runner.progress(holder["id"]))
        if spec["n"] % 7 == 0:
            raise ValueError("permanent")

    runner = make_runner(execute, max_concurrent_jobs=4)
    holder["id"] = runner.submit(items(300)).batch_id
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(runner.progress(holder["id"]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    runner.run()
    stop.set()
    sampler.join()
    assert all(adds_up(p) and p.total == 300 for p in samples)
    assert any(0 < p.succeeded < 250 and not p.done for p in samples)
    final = runner.progress(holder["id"])
    assert (final.failed, final.succeeded) == (43, 257)  # multiples of 7 failed
    assert final.done and final.eta_s == 0.0 and final.percent == 100.0


def test_eta_follows_the_recent_throughput(make_runner: Any, clock: FakeClock) -> None:
    seen: list[BatchProgress] = []
    holder: dict[str, int] = {}

    def execute(spec: Mapping[str, Any], token: CancelToken) -> None:
        seen.append(runner.progress(holder["id"]))
        clock.advance(2.0)  # each item takes two seconds

    runner = make_runner(execute, max_concurrent_jobs=1)
    holder["id"] = runner.submit(items(10)).batch_id
    runner.run()
    assert seen[0].eta_s is None and seen[0].throughput == 0.0
    for k, p in enumerate(seen[1:], 1):
        assert p.throughput == pytest.approx(0.5)
        assert p.eta_s == pytest.approx(2.0 * (10 - k))
        assert p.elapsed_s == pytest.approx(2.0 * k)
    assert runner.progress(holder["id"]).eta_s == 0.0


def test_the_monitor_times_every_attempt_and_the_run(make_runner: Any, clock: FakeClock) -> None:
    def execute(spec: Mapping[str, Any], token: CancelToken) -> None:
        if spec["n"] == 0 and not failed:
            failed.append(True)
            raise SourceError("busy", transient=True)

    failed: list[bool] = []
    monitor = Monitor(MonitorSettings(), clock=clock)
    runner = make_runner(execute, instrument=monitor, retry_delay_ms=100)
    runner.submit(items(3))
    runner.run()
    stats = {s.operation: s for s in monitor.stats()}
    assert (stats["batch.item"].calls, stats["batch.item"].failures) == (4, 1)
    assert stats["batch.run"].calls == 1


# --- persistence and resume ----------------------------------------------------------------------


def test_results_are_written_in_groups_and_read_back(make_runner: Any, storage: Storage) -> None:
    written_before_last: list[int] = []

    def execute(spec: Mapping[str, Any], token: CancelToken) -> dict[str, int]:
        if spec["n"] == 9:
            written_before_last.append(_finished_in_db(storage))
        if spec["n"] == 3 and not flaked:
            flaked.append(True)
            raise SourceError("timeout", transient=True)
        return {"double": spec["n"] * 2}

    flaked: list[bool] = []
    runner = make_runner(execute, max_concurrent_jobs=1, retry_delay_ms=100)
    batch_id = runner.submit(items(10), config={"batchSize": 1000}, name="read-back").batch_id
    runner.run()
    assert written_before_last == [0]  # nothing written until the group is full or the batch ends

    reader = make_runner()
    (info,) = reader.list_batches()
    assert (info.batch_id, info.name, info.status) == (batch_id, "read-back", "finished")
    assert info.total == 10 and info.counts == {"succeeded": 10} and info.finished_at is not None
    assert info.config["batch_size"] == 1000
    detail = reader.batch_detail(batch_id)
    assert [i.result for i in detail.items] == [{"double": 2 * n} for n in range(10)]
    assert [i.spec for i in detail.items] == items(10)
    assert [a.outcome for a in detail.items[3].attempts] == ["transient", "succeeded"]
    assert all(len(i.attempts) == 1 for i in detail.items if i.item_id != 4)


def _finished_in_db(storage: Storage) -> int:
    with storage.engine.connect() as conn:
        return len(conn.execute(select(batch_items).where(batch_items.c.status != "queued")).all())


def test_close_interrupts_running_items_and_resume_runs_them_again(
    make_runner: Any, storage: Storage
) -> None:
    first, batch_id = closed_during_item(make_runner, 1)
    assert first.progress(batch_id).queued == 2  # the interrupted item is queued again

    ran: list[int] = []
    second = make_runner(lambda spec, token: ran.append(spec["n"]))
    assert second.resume() == [batch_id]
    assert second.resume() == []
    second.run()
    assert ran == [1, 2]
    detail = second.batch_detail(batch_id)
    assert detail.info.status == "finished"
    assert [a.outcome for a in detail.items[1].attempts] == ["interrupted", "succeeded"]
    assert [a.attempt for a in detail.items[1].attempts] == [1, 2]


def test_resume_after_sigkill_runs_every_item_exactly_once(url: str, tmp_path: Path) -> None:
    db = tmp_path / "recon.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.batch.batch_child", url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_hang(child, db)
    finally:
        child.kill()
        _, stderr = child.communicate()
    assert child.returncode == -9, stderr

    with closing(sqlite3.connect(db)) as conn:
        recorded = {
            n for (n,) in conn.execute("SELECT item_id FROM batch_items WHERE status = 'succeeded'")
        }
    calls: list[tuple[str, int]] = []
    storage = open_storage(StorageSettings(db_url=url))
    try:
        runner = batch_child.build(storage, hang=False, calls=calls)
        (batch_id,) = runner.resume()
        runner.run()
        progress = runner.progress(batch_id)
        runner.close()
        with storage.engine.connect() as conn:
            done = Counter(n for (n,) in conn.execute(select(batch_child.done_items.c.n)))
    finally:
        storage.close()

    everything = set(range(1, batch_child.ITEMS + 1))
    assert done == Counter(everything)  # every item's work happened exactly once
    assert not {n for _, n in calls} & recorded  # items recorded as done were not even looked at
    executed = {n for kind, n in calls if kind == "execute"}
    assert executed == set(
        range(batch_child.HANG_FROM + batch_child.CONCURRENCY, batch_child.ITEMS + 1)
    )
    assert progress.done and progress.succeeded + progress.skipped == batch_child.ITEMS
    assert progress.skipped == len(everything - recorded - executed)


def _wait_for_hang(child: subprocess.Popen[bytes], db: Path) -> None:
    """Until the child has done items 1..27 (25-27 hang) and written its full result groups."""
    target = batch_child.HANG_FROM + batch_child.CONCURRENCY - 1
    least_written = target - batch_child.CONCURRENCY - batch_child.BATCH_SIZE + 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        if db.exists() and _count(db, "test_done_items") == target:
            if _count(db, "batch_items WHERE status = 'succeeded'") >= least_written:
                return
        time.sleep(0.02)
    raise AssertionError("the child never reached the hanging items")


def _count(db: Path, table: str) -> int:
    try:
        with closing(sqlite3.connect(db, timeout=5)) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # the child has not created the table yet
        return -1


# --- command line -----------------------------------------------------------------------


def test_cli_lists_shows_cancels_and_resumes(
    url: str, storage: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli.core import main

    done = BatchRunner(
        BatchSettings(), store=SqlBatchStore(storage), execute=noop, memory_reader=lambda: 0.0
    )
    finished = done.submit(items(2), name="done").batch_id
    done.run()
    done.close()
    left = BatchRunner(
        BatchSettings(), store=SqlBatchStore(storage), execute=noop, memory_reader=lambda: 0.0
    )
    unfinished = left.submit(items(3), name="left").batch_id
    left.close()  # never ran: its items stay queued
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str]:
        code = main(["--db", url, "batch", *args])
        return code, capsys.readouterr().out

    code, text = run("list", "--json")
    listed = {b["batch_id"]: (b["status"], b["counts"]) for b in json.loads(text)}
    assert code == 0
    assert listed == {
        finished: ("finished", {"succeeded": 2}),
        unfinished: ("running", {"queued": 3}),
    }
    code, text = run("show", str(finished), "--json")
    assert code == 0 and [i["result"] for i in json.loads(text)["items"]] == [0, 1]
    assert run("cancel", str(unfinished))[0] == 0
    code, text = run("show", str(unfinished), "--json")
    shown = json.loads(text)["items"]
    assert [(i["status"], i["error"], i["spec"]) for i in shown] == [
        ("cancelled", "cancelled", spec) for spec in items(3)
    ]
    assert run("resume", "--json") == (0, "[]\n")
    assert run("show", "999")[0] == 2
    assert run("cancel", str(finished))[0] == 2


def test_retry_budget_counts_only_attempts_without_progress(
    make_runner: Callable[..., BatchRunner],
) -> None:
    """A long item that fails after steady progress keeps going; one stuck item fails."""
    steps_done: Counter[int] = Counter()

    def flaky(spec: Mapping[str, Any], token: CancelToken) -> int:
        n = spec["n"]
        while steps_done[n] < 6:
            steps_done[n] += 1
            token.progress()
            if n == 0 and steps_done[n] % 2 == 0:  # fails after every second step
                raise SourceError("HTTP 503", transient=True)
        if n == 1:
            raise SourceError("HTTP 503", transient=True)  # never progresses again
        return n

    runner = make_runner(flaky, retry_attempts=2)
    batch = runner.submit(items(2)).batch_id
    runner.run(until_idle=True)
    detail = {i.item_id: i for i in runner.batch_detail(batch).items}
    progressing, stuck = detail[1], detail[2]
    assert progressing.status == "succeeded" and len(progressing.attempts) == 4  # 3 failures > 2
    assert stuck.status == "failed" and len(stuck.attempts) == 3  # budget of 2 retries


@pytest.mark.parametrize(
    "message", ['quote " backslash \\ tab\t newline\n', "ünïcode ✓ 区", "", '{"json": [1]}']
)
def test_stored_attempts_read_back_exactly(
    make_runner: Any, storage: Storage, clock: FakeClock, message: str
) -> None:
    def execute(spec: Mapping[str, Any], token: CancelToken) -> None:
        token.progress()
        clock.advance(1.25)
        raise ValueError(message)

    runner = make_runner(execute)
    batch_id = runner.submit(items(1)).batch_id
    runner.run()
    (item,) = make_runner().batch_detail(batch_id).items  # as stored, by another runner
    (attempt,) = item.attempts
    assert (attempt.attempt, attempt.outcome, attempt.error) == (
        1,
        "permanent",
        f"ValueError: {message}",
    )
    assert attempt.started_at == clock.now() - timedelta(seconds=1.25)
    assert attempt.ended_at - attempt.started_at == timedelta(seconds=1.25)
    with storage.engine.connect() as conn:
        (history,) = conn.execute(select(batch_items.c.history)).scalars()
    assert json.loads(history)[0]["progressed"] is True


def test_a_batch_cancelled_after_close_is_cancelled_in_the_database(
    make_runner: Any, url: str
) -> None:
    runner, batch_id = closed_during_item(make_runner, 0)  # item 1 interrupted, 2 and 3 never ran
    runner.cancel(batch_id)
    with pytest.raises(BatchError, match="closed"):
        runner.cancel_item(batch_id, 1)
    detail = make_runner().batch_detail(batch_id)  # as stored
    assert detail.info.status == "cancelled"
    assert [(i.status, [a.outcome for a in i.attempts]) for i in detail.items] == [
        ("cancelled", ["interrupted"]),
        ("cancelled", []),
        ("cancelled", []),
    ]


def test_non_finite_durations_and_unstorable_priorities(make_runner: Any) -> None:
    from engine.batch.records import attempt_json

    record = json.loads(
        attempt_json(1, datetime(2025, 7, 1, tzinfo=UTC), math.nan, "x", None, False)
    )
    assert math.isnan(record["duration_s"])
    with pytest.raises(ConfigError, match="not JSON-serializable"):
        make_runner().submit([ItemSpec({"n": 1}, priority=Decimal(1))])  # type: ignore[arg-type]
