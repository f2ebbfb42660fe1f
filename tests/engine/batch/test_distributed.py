"""The procrastinate runner on a real PostgreSQL server with real ``recon worker``
processes: results equal the thread runner's, priorities, retries, cancel, a worker
killed mid-item, the workers list, and the clear error on SQLite (issue 17)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from procrastinate.exceptions import ConnectorException
from procrastinate.manager import JobManager

from engine.api.app import create_app
from engine.app.console import Console
from engine.batch.distributed import TASK, DistributedRunner, make_app
from engine.batch.remote import ItemWorker, WorkerProcess
from engine.cli.core import main
from engine.errors import ConfigError
from engine.settings import Settings
from engine.store.pg import scratch_database
from engine.store.taskqueue import Slots
from tests.engine.api.test_api import serving
from tests.postgres import postgres_server, restart

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 90.0  # generous: the machine is shared


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(server: str) -> Iterator[str]:
    """A fresh database on the shared server for each test."""
    with scratch_database(server, prefix="recon_dist") as url:
        yield url


def settings(
    url: str, *, runner: str = "procrastinate", stall_s: float = 10, **source: Any
) -> Settings:
    s = Settings().with_values("storage", db_url=url)
    s = s.with_values("batch", runner=runner, retry_delay_ms=100, stall_timeout_s=stall_s)
    return s.with_values("source", **source) if source else s


def worker_env(url: str, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update(RECON_DB_URL=url, RECON_BATCH_RUNNER="procrastinate", **values)
    return env


@contextmanager
def workers(
    tmp: Path,
    url: str,
    count: int,
    *,
    concurrency: int = 2,
    args: tuple[str, ...] = (),
    **env: str,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` real ``recon worker`` processes; stopped by SIGTERM at the end, each
    must exit cleanly (a SIGKILLed one is left as it is)."""
    procs = []
    for n in range(count):
        with (tmp / f"worker{n}.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "worker", "--concurrency", str(concurrency),
                 "--grace", "2", *args],
                cwd=ROOT, env=worker_env(url, **env), stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in procs]
        logs = "\n".join((tmp / f"worker{n}.log").read_text() for n in range(count))
        assert all(c in (0, -signal.SIGKILL) for c in codes), logs


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)  # polling the database for a state another process reaches
    raise AssertionError(f"timed out waiting for {what}")


def finished(console: Console, batch_id: int) -> None:
    wait_for(lambda: console.batch.progress(batch_id).done, f"batch {batch_id} to finish")


def results(console: Console, month: str) -> dict[str, Any]:
    """What a run leaves: each district's job state and its timeline (times left out)."""
    out = {}
    for job in console.storage.jobs(month=month):
        timeline = [
            (e.as_of, e.data_month, dict(e.metrics), e.changes, e.significant, e.note, e.warnings)
            for e in console.storage.timeline(job.id)
        ]
        out[job.district] = (job.status.value, job.reason, job.checks, timeline)
    return out


def thread_run(tmp: Path, month: str, districts: list[str], **source: Any) -> dict[str, Any]:
    console = Console(settings(f"sqlite:///{tmp / 'threads.db'}", runner="threads", **source))
    try:
        result = console.start_batch(month, districts=districts)
        console.batch.run(until_idle=True)
        console.settle(result.batch_id)
        return results(console, month)
    finally:
        console.close()


@contextmanager
def console_on(url: str, stall_s: float = 10, **source: Any) -> Iterator[Console]:
    console = Console(settings(url, stall_s=stall_s, **source))
    try:
        yield console
    finally:
        console.close()


def no_duplicate_checks(console: Console, month: str) -> bool:
    for job in console.storage.jobs(month=month):
        days = [e.as_of for e in console.storage.timeline(job.id)]
        if len(days) != len(set(days)):
            return False
    return True


DISTRICTS = ["1", "2", "3", "4", "5"]


def test_a_batch_left_to_the_workers_is_never_taken_for_abandoned(pg_url: str) -> None:
    """Its starter holds no lease while workers run it (they run on if it dies): a
    read of any process leaves it running (a thread runner's would end interrupted)."""
    with console_on(pg_url) as console:
        result = console.start_batch("2025-03", districts=["1", "2"])
        assert console.leases.held_by("2025-03") is None
        with console_on(pg_url) as other:
            info = other.batch.batch_detail(result.batch_id).info
            assert info.status == "running" and info.counts == {"queued": 2}


def test_two_workers_give_the_thread_runners_results(tmp_path: Path, pg_url: str) -> None:
    expected = thread_run(tmp_path, "2025-03", DISTRICTS, latency_ms=2)
    with workers(tmp_path, pg_url, 2, RECON_SOURCE_LATENCY_MS="2"):
        with console_on(pg_url, latency_ms=2) as console:
            result = console.start_batch("2025-03", districts=DISTRICTS)
            finished(console, result.batch_id)
            detail = console.batch.batch_detail(result.batch_id)
            assert detail.info.status == "finished"
            assert [i.status for i in detail.items] == ["succeeded"] * len(DISTRICTS)
            assert all(len(i.attempts) == 1 for i in detail.items)
            assert results(console, "2025-03") == expected
            progress = console.batch.progress(result.batch_id)
            assert (progress.succeeded, progress.percent, progress.eta_s) == (5, 100.0, 0.0)
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert all("item" in log for log in logs), logs  # both workers ran items


def test_higher_priority_first_and_the_global_limit(tmp_path: Path, pg_url: str) -> None:
    with console_on(pg_url) as console:
        low = console.start_batch("2025-03", districts=["1", "2"], priority=0,
                                  config={"maxConcurrentJobs": 1})  # fmt: skip
        high = console.start_batch("2025-04", districts=["1", "2"], priority=5,
                                   config={"maxConcurrentJobs": 1})  # fmt: skip
        with workers(tmp_path, pg_url, 2):  # 4 items at once if nothing limited them
            finished(console, low.batch_id)
            finished(console, high.batch_id)
        spans = {
            (b, i.item_id): (i.attempts[0].started_at, i.attempts[0].ended_at)
            for b in (low.batch_id, high.batch_id)
            for i in console.batch.batch_detail(b).items
        }
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    assert [b for (b, _), _ in ordered] == [high.batch_id] * 2 + [low.batch_id] * 2
    # maxConcurrentJobs 1 across both workers: no two attempts overlap
    for (_, (_, end)), (_, (start, _)) in itertools.pairwise(ordered):
        assert end <= start


def test_a_transient_failure_is_retried(tmp_path: Path, pg_url: str) -> None:
    with workers(tmp_path, pg_url, 1, concurrency=1, RECON_SOURCE_FAILURE_RATE="0.2"):
        with console_on(pg_url, failure_rate=0.2) as console:
            result = console.start_batch("2025-03", districts=["1", "2", "3"],
                                         config={"retryAttempts": 5})  # fmt: skip
            finished(console, result.batch_id)
            items = console.batch.batch_detail(result.batch_id).items
    assert [i.status for i in items] == ["succeeded"] * 3
    outcomes = [a.outcome for i in items for a in i.attempts]
    assert "transient" in outcomes
    assert all(i.attempts[-1].outcome == "succeeded" for i in items)


def test_a_timed_out_attempt_is_stopped_and_failed(tmp_path: Path, pg_url: str) -> None:
    with workers(tmp_path, pg_url, 1, RECON_SOURCE_LATENCY_MS="400"):
        with console_on(pg_url, latency_ms=400) as console:
            config = {"timeoutMs": 1000, "retryAttempts": 0}
            result = console.start_batch("2025-03", districts=["1"], config=config)
            finished(console, result.batch_id)
            (item,) = console.batch.batch_detail(result.batch_id).items

            def job_failed() -> bool:  # the worker writes the job's end after the item's
                console.storage.clear_cache()
                return console.storage.jobs(month="2025-03")[0].status.value == "failed"

            wait_for(job_failed, "the job to be failed")
    assert item.status == "failed" and [a.outcome for a in item.attempts] == ["timeout"]


def running_item(console: Console) -> tuple[int, tuple[str, ...]] | None:
    from engine.app import queries

    for w in queries.workers_view(console):
        if w.running and w.state == "alive":
            return w.pid, w.running
    return None


def attempt_running(console: Console, batch_id: int, item_id: int) -> bool:
    items = console.batch.batch_detail(batch_id).items
    return any(i.item_id == item_id and i.attempts and i.attempts[-1].outcome == "running"
               for i in items)  # fmt: skip


def test_cancel_of_a_batch_stops_its_items(tmp_path: Path, pg_url: str) -> None:
    with workers(tmp_path, pg_url, 1, concurrency=1, RECON_SOURCE_LATENCY_MS="300"):
        with console_on(pg_url, latency_ms=300) as console:
            result = console.start_batch("2025-03", districts=DISTRICTS)
            wait_for(lambda: running_item(console), "an item to run")
            console.batch.cancel(result.batch_id)
            wait_for(lambda: running_item(console) is None, "the worker to stop the item")
            detail = console.batch.batch_detail(result.batch_id)
            jobs = {j.status.value for j in console.storage.jobs(month="2025-03")}
            app = console.batch.app()  # type: ignore[union-attr]
            statuses = {j.status for j in app.job_manager.list_jobs()}
    assert detail.info.status == "cancelled"
    assert {i.status for i in detail.items} == {"cancelled"}
    assert jobs == {"cancelled"}
    assert statuses <= {"cancelled", "aborted"}  # nothing left to run


def test_cancel_of_a_running_job_stops_its_item_only(tmp_path: Path, pg_url: str) -> None:
    with workers(tmp_path, pg_url, 1, concurrency=1, RECON_SOURCE_LATENCY_MS="300"):
        with console_on(pg_url, latency_ms=300) as console:
            result = console.start_batch("2025-03", districts=["1", "2"])
            progress = console.batch.progress
            wait_for(lambda: progress(result.batch_id).running, "an item to run")
            running = next(
                i for i in console.batch.batch_detail(result.batch_id).items
                if i.status == "running"
            )  # fmt: skip
            console.cancel_job(int(running.spec["job_id"]))
            finished(console, result.batch_id)
            items = {i.item_id: i for i in console.batch.batch_detail(result.batch_id).items}
            jobs = {j.id: j.status.value for j in console.storage.jobs(month="2025-03")}
    other = items[3 - running.item_id]
    assert items[running.item_id].status == "cancelled"
    assert other.status == "succeeded"
    assert jobs[running.spec["job_id"]] == "cancelled"
    assert jobs[other.spec["job_id"]] == "completed"


def test_a_killed_worker_s_item_is_finished_by_another(tmp_path: Path, pg_url: str) -> None:
    expected = thread_run(tmp_path, "2025-03", DISTRICTS[:3], latency_ms=150)
    env = {"RECON_SOURCE_LATENCY_MS": "150", "RECON_BATCH_STALL_TIMEOUT_S": "6"}
    with workers(tmp_path, pg_url, 2, concurrency=1, **env) as procs:
        with console_on(pg_url, latency_ms=150) as console:
            result = console.start_batch("2025-03", districts=DISTRICTS[:3])
            pid, (item,) = wait_for(lambda: running_item(console), "an item to run")
            item_id = int(item.split("/")[1])
            # the attempt is recorded (a worker lists its item while it waits for a slot)
            wait_for(lambda: attempt_running(console, result.batch_id, item_id), "its attempt")
            victim = next(p for p in procs if p.pid == pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            finished(console, result.batch_id)
            detail = console.batch.batch_detail(result.batch_id)
            assert [i.status for i in detail.items] == ["succeeded"] * 3
            outcomes = sorted([a.outcome for a in i.attempts] for i in detail.items)
            assert outcomes == [["interrupted", "succeeded"], ["succeeded"], ["succeeded"]]
            assert no_duplicate_checks(console, "2025-03")
            assert results(console, "2025-03") == expected


def test_a_stopped_worker_queues_its_item_again(tmp_path: Path, pg_url: str) -> None:
    no_grace = ("--grace", "0")
    with console_on(pg_url, latency_ms=200) as console:
        with workers(tmp_path, pg_url, 1, args=no_grace, RECON_SOURCE_LATENCY_MS="200") as procs:
            result = console.start_batch("2025-03", districts=["1"])
            progress = console.batch.progress
            wait_for(lambda: progress(result.batch_id).running, "the item to run")
            procs[0].send_signal(signal.SIGTERM)  # no grace: the attempt is interrupted
            assert procs[0].wait(timeout=60) == 0
        (item,) = console.batch.batch_detail(result.batch_id).items
        assert item.status == "queued"
        assert [a.outcome for a in item.attempts] == ["interrupted"]
        with workers(tmp_path, pg_url, 1, RECON_SOURCE_LATENCY_MS="200"):
            finished(console, result.batch_id)
        (item,) = console.batch.batch_detail(result.batch_id).items
    assert item.status == "succeeded"
    assert [a.outcome for a in item.attempts] == ["interrupted", "succeeded"]


def workers_api(client: httpx.Client) -> Mapping[str, Any]:
    response = client.get("/api/reconciliation/workers")
    assert response.status_code == 200
    body: Mapping[str, Any] = response.json()
    return body


def test_the_workers_api_marks_a_killed_worker_lost(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECON_BATCH_STALL_TIMEOUT_S", "6")  # for `recon workers` below
    with workers(tmp_path, pg_url, 2, RECON_BATCH_STALL_TIMEOUT_S="6") as procs:
        with (
            console_on(pg_url, stall_s=6) as console,
            serving(create_app(console)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            wait_for(lambda: workers_api(client)["alive"] == 2, "two live workers")
            body = workers_api(client)
            assert {w["pid"] for w in body["workers"]} == {p.pid for p in procs}
            assert set(body["workers"][0]) >= {"host", "pid", "startedAt", "heartbeatAt",
                                               "running", "state"}  # fmt: skip
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            lost = wait_for(
                lambda: [w for w in workers_api(client)["workers"] if w["state"] == "lost"],
                "the killed worker to be lost",
            )
    assert [w["pid"] for w in lost] == [procs[0].pid]
    capsys.readouterr()
    assert main(["workers", "--json", "--db", pg_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(w["pid"], w["state"]) for w in listed} >= {(procs[0].pid, "lost")}


def test_the_watcher_ticks_once_per_period_whatever_the_number_of_workers(
    tmp_path: Path, pg_url: str
) -> None:
    from engine.app import queries
    from engine.batch.distributed import WATCH_TASK

    watch = ("--watch", "--watch-every", "1", "--watch-districts", "1,2")
    with workers(tmp_path, pg_url, 3, args=watch):
        with console_on(pg_url) as console:
            wait_for(lambda: queries.watcher_view(console).ticks >= 3, "three ticks")
            seen = queries.watcher_view(console)  # between ticks too: the workers watch
            assert seen.running and seen.summary.startswith("watcher on "), seen.summary
            assert seen.pid in {w.pid for w in queries.workers_view(console)}
    with console_on(pg_url) as console:
        ticks = queries.watcher_view(console).ticks
        app = console.batch.app()  # type: ignore[union-attr]
        jobs = list(app.job_manager.list_jobs(task=WATCH_TASK))
        batches = console.batch.list_batches()
    stamps = sorted(j.task_kwargs["timestamp"] for j in jobs)
    assert len(stamps) == len(set(stamps)) >= 3  # one job per period
    logs = "".join((tmp_path / f"worker{n}.log").read_text() for n in range(3))
    ran = sorted(int(t) for t in re.findall(r"watcher tick of (\d+)", logs))
    assert ran == stamps  # each run once, by one of the three workers
    assert "error" not in logs  # a tick while the last tick's batch runs goes on quietly
    assert 3 <= ticks <= len(stamps)  # a tick that finds the last one still on skips
    assert batches and batches[-1].name == "month-end 2026-11"  # the first tick started it


def test_recon_run_on_the_workers_shows_their_progress(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar reads the batch's progress from the store: it moves although the items
    run in other processes (it stayed at 0 while it counted this process's events)."""
    monkeypatch.setenv("RECON_BATCH_RUNNER", "procrastinate")
    months = ["run", "--month", "2025-03", "--districts", ",".join(DISTRICTS)]
    with workers(tmp_path, pg_url, 2, RECON_SOURCE_LATENCY_MS="2"):
        assert main([*months, "--db", pg_url, "--latency-ms", "2"]) == 0
    shown = capsys.readouterr().err
    assert "batch 1 " in shown and f"{len(DISTRICTS)}/{len(DISTRICTS)}" in shown, shown


def test_the_procrastinate_runner_needs_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"needs a PostgreSQL database: a postgresql\+psycopg://"):
        Console(settings(f"sqlite:///{tmp_path / 'x.db'}"))
    assert main(["worker", "--db", f"sqlite:///{tmp_path / 'y.db'}"]) == 2
    assert "postgresql+psycopg://" in capsys.readouterr().err


def diagnosis(console: Console, batch_id: int, tmp: Path) -> str:
    """Each item's state and attempts, and the workers' own lines (tracebacks left out)."""
    items = [f"item {i.item_id}: {i.status.value} after {len(i.attempts)} attempts"
             for i in console.batch.batch_detail(batch_id).items]  # fmt: skip
    lines = [f"-- {log.name}\n{log.read_text()}" for log in sorted(tmp.glob("worker*.log"))]
    skip = (" ", "\t", "Traceback", "The above")
    said = [line for line in "\n".join(lines).splitlines()
            if line.strip() and not line.startswith(skip)]  # fmt: skip
    return "\n".join(["the batch did not finish", *items, *said])


def test_workers_go_on_after_postgresql_restarts_mid_batch(tmp_path: Path) -> None:
    """The server restarts (every session cut) while the workers run a batch: they
    reconnect, the batch completes, and the results equal the thread runner's."""
    districts = [str(n) for n in range(1, 9)]
    expected = thread_run(tmp_path, "2025-03", districts, latency_ms=40)
    with postgres_server() as server:  # its own: the restart must not cut other tests
        with scratch_database(server, prefix="recon_restart") as url:
            with workers(tmp_path, url, 2, RECON_SOURCE_LATENCY_MS="40"):
                with console_on(url, latency_ms=40) as console:
                    result = console.start_batch("2025-03", districts=districts)
                    wait_for(lambda: console.batch.progress(result.batch_id).succeeded, "one item")
                    restart(server)
                    try:
                        finished(console, result.batch_id)
                    except AssertionError as exc:  # what each item and worker did
                        raise AssertionError(diagnosis(console, result.batch_id, tmp_path)) from exc
                    detail = console.batch.batch_detail(result.batch_id)
                    # an item whose job completed just before its row could be written
                    # is skipped when it runs again (its work is done)
                    assert {i.status for i in detail.items} <= {"succeeded", "skipped"}
                    assert results(console, "2025-03") == expected


def run_worker_until(process: WorkerProcess, then: Callable[[], None]) -> None:
    """Run ``process`` in this (main) thread while another runs ``then``; SIGTERM then
    stops the worker through its own handler (unless it has returned already)."""
    returned = threading.Event()
    failed: list[BaseException] = []  # raised again here, in the test's thread

    def then_stop() -> None:
        try:
            then()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)
        finally:
            if not returned.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=then_stop)
    helper.start()
    try:
        process.run()
    finally:
        returned.set()
        helper.join()
    if failed:
        raise failed[0]


def fails_once(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """procrastinate's ``JobManager.<method>`` fails once, as it does when the server
    restarts under it; the list gets "failed" and then "written" per later call."""
    real = getattr(JobManager, method)
    calls: list[str] = []

    async def flaky(self: JobManager, *args: Any, **kwargs: Any) -> Any:
        if not calls:
            calls.append("failed")
            raise ConnectorException("server closed the connection unexpectedly")
        calls.append("written")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(JobManager, method, flaky)
    return calls


def test_a_failed_heartbeat_write_is_tried_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procrastinate writes no more heartbeats after one failed write: the worker tries
    it again, so no worker takes its running items for stalled, and items run on."""
    beats = fails_once(monkeypatch, "update_heartbeat")
    said: list[str] = []
    started: list[int] = []
    with console_on(pg_url, stall_s=3) as console:
        process = WorkerProcess(console, concurrency=2, grace_s=2, say=said.append)

        def then() -> None:
            wait_for(lambda: beats.count("written") >= 2, "heartbeats after the failed one")
            started.append(console.start_batch("2025-03", districts=["1", "2"]).batch_id)
            finished(console, started[0])

        run_worker_until(process, then)
        assert started and console.batch.progress(started[0]).succeeded == 2
    assert not [s for s in said if "its worker was lost" in s], said


def test_a_job_whose_end_was_not_written_is_queued_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procrastinate could not write how a job ended (the server went away in the middle
    of that write): the job stays running though no task runs it, and the item behind it
    waits for a slot for ever. The worker queues it again; every job ends and the batch
    finishes."""
    fails_once(monkeypatch, "finish_job")
    said: list[str] = []
    started: list[int] = []
    with console_on(pg_url) as console:
        process = WorkerProcess(console, concurrency=1, grace_s=2, say=said.append)

        def then() -> None:
            started.append(console.start_batch("2025-03", districts=["1", "2"]).batch_id)
            finished(console, started[0])
            with make_app(console.settings.storage.db_url).open() as app:
                ended = lambda: {j.status for j in app.job_manager.list_jobs(task=TASK)}  # noqa: E731
                wait_for(lambda: ended() == {"succeeded"}, "every job to end")

        run_worker_until(process, then)
        assert started and console.batch.progress(started[0]).succeeded == 2
    assert [s for s in said if "how it ended was not written; queued again" in s], said


def test_a_worker_runs_as_many_items_at_once_as_its_concurrency(pg_url: str) -> None:
    """``--concurrency 8`` runs 8 items at once, whatever the number of CPUs (the
    threads procrastinate runs items in are sized to it)."""
    s = settings(pg_url).with_values("batch", max_concurrent_jobs=8)
    console = Console(s.with_values("source", latency_ms=150))
    most: list[int] = [0]
    try:
        process = WorkerProcess(console, concurrency=8, grace_s=2, say=lambda line: None)

        def then() -> None:
            result = console.start_batch("2025-03", districts=[str(n) for n in range(1, 9)])

            def sampled() -> bool:  # the most items the worker ran at once, until done
                most[0] = max(most[0], len(process.items.snapshot()[0]))
                return console.batch.progress(result.batch_id).done

            wait_for(sampled, "the batch to finish")

        run_worker_until(process, then)
    finally:
        console.close()
    assert most[0] == 8


def test_a_worker_goes_on_when_procrastinate_stops_its_worker_by_itself(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A side task of procrastinate's worker that fails (its listener, the server
    restarting) stops that worker without an error: ``recon worker --watch`` starts it
    again and runs items until a signal stops it, instead of exiting as if asked to."""
    fails_once(monkeypatch, "listen_for_jobs")
    said: list[str] = []
    started: list[int] = []  # the batch run once procrastinate's worker is back
    with console_on(pg_url) as console:
        watch = (3600.0, lambda: "ticked")  # a periodic task: procrastinate then watches
        process = WorkerProcess(console, concurrency=2, grace_s=2, say=said.append,
                                watch=watch)  # fmt: skip

        def then() -> None:
            wait_for(lambda: any("reconnected" in s for s in said), "the worker to go on")
            started.append(console.start_batch("2025-03", districts=["1", "2"]).batch_id)
            finished(console, started[0])

        run_worker_until(process, then)
        assert started and console.batch.progress(started[0]).succeeded == 2
    lost = [s for s in said if "the database was lost" in s]
    assert lost and "heartbeat or listener" in lost[0], said
    assert said[-1] == f"worker {process.worker_id} stopped"


class _Context:
    """procrastinate's JobContext as the worker's task reads it (one job, never aborted)."""

    def __init__(self, batch_id: int, item_id: int) -> None:
        kwargs = {"batch_id": batch_id, "item_id": item_id}
        self.job = SimpleNamespace(id=item_id, priority=0, task_kwargs=kwargs)

    def should_abort(self) -> bool:
        return False

    def abort_reason(self) -> None:
        return None


def test_a_worker_waits_while_its_memory_is_above_the_batchs_threshold(pg_url: str) -> None:
    """As with threads: no item starts while resident memory is above
    ``memoryThresholdMB``; the wait is added to the batch's throttled seconds."""
    readings = iter([4000.0, 4000.0, 4000.0])  # MB: over 1024 three times, then 50

    with console_on(pg_url) as console:
        runner = console.batch
        assert isinstance(runner, DistributedRunner)
        items = ItemWorker(
            runner, execute=runner.execute, should_skip=runner.should_skip,
            flush=console.storage.flush, forget=console.storage.clear_cache,
            slots=Slots(console.storage.engine, task=TASK), clock=console.clock,
            say=lambda line: None, memory=lambda: next(readings, 50.0),
        )  # fmt: skip
        result = console.start_batch("2025-03", districts=["1"])
        (item,) = console.batch.batch_detail(result.batch_id).items
        items.run(_Context(result.batch_id, item.item_id), result.batch_id, item.item_id,
                  item.spec)  # fmt: skip
        assert next(readings, None) is None, "it read memory until it fell"
        progress = console.batch.progress(result.batch_id)
        assert progress.succeeded == 1 and progress.done
        assert progress.throttled_s >= 2 * 0.05  # at least two waits of the poll step
