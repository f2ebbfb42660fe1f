"""The REST API over real HTTP on 127.0.0.1, against a console on a real database: each
test that uses one runs on SQLite and on PostgreSQL (``db_url``, ``module_db_url``)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from engine.api.app import create_app
from engine.api.schemas import camel
from engine.app.console import Console
from engine.cli.api import is_loopback
from engine.cli.core import main
from engine.settings import Settings
from tests.databases import closed_to_connections
from tests.engine.api.procs import DEADLINE_S, recon_api
from tests.engine.api.procs import free_port as free_port  # used here by other tests' modules
from tests.engine.api.procs import wait_until_up as wait_until_up

PERF = "/api/reconciliation/performance"
JOBS = "/api/reconciliation/jobs"
MONTH = "2025-06"
TOKEN = "s3cret-token"

Serve = Callable[..., tuple[Console, httpx.Client]]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread on a free port of 127.0.0.1; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def make_served(
    stack: ExitStack,
    db: Path | str,
    *,
    token: str | None = None,
    max_body_bytes: int = 1_000_000,
    background: bool = False,
    latency_ms: float = 0.0,
) -> tuple[Console, httpx.Client]:
    """A console on ``db`` (a SQLite file or a URL) and an HTTP client of an app served
    over it, closed by ``stack``."""
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    settings = Settings().with_values("storage", db_url=url)
    console = Console(settings.with_values("source", latency_ms=latency_ms))
    stack.callback(console.close)
    if background:
        console.start_background()
    url = stack.enter_context(
        serving(create_app(console, token=token, max_body_bytes=max_body_bytes))
    )
    return console, stack.enter_context(httpx.Client(base_url=url, timeout=30))


@pytest.fixture
def serve(db_url: str) -> Iterator[Serve]:
    """Factory: ``make_served`` on the test's database (SQLite, PostgreSQL)."""
    with ExitStack() as stack:
        yield lambda **options: make_served(stack, db_url, **options)


@pytest.fixture(scope="module")
def worked(module_db_url: str) -> Iterator[tuple[Console, httpx.Client]]:
    """A served console whose engine has reconciled a small month (shared by read-only tests)."""
    with ExitStack() as stack:
        console, client = make_served(stack, module_db_url)
        console.start_batch(MONTH, districts=["1", "F"])
        console.batch.run(until_idle=True)
        console.monitor.sample_now()
        yield console, client


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["field"] == field
    assert field.split(".")[-1] in body["error"] or status in (401, 404, 409, 413)
    return body


def wait_until_done(client: httpx.Client, batch_id: int) -> dict[str, Any]:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        batch: dict[str, Any] = ok(client.get(f"{PERF}/batch/{batch_id}"))
        if batch["done"]:
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} not done after {DEADLINE_S} s")


STATS_FIELDS = {
    "operationName", "totalCalls", "successfulCalls", "failedCalls", "averageDuration",
    "minDuration", "maxDuration", "p95Duration", "p99Duration", "successRate", "callsPerSecond",
}  # fmt: skip


# --- the seed's endpoints ---------------------------------------------------------------------


def test_stats_all_and_one_operation(worked: tuple[Console, httpx.Client]) -> None:
    _, client = worked
    body = ok(client.get(f"{PERF}/stats", params={"timeWindow": 600_000}))
    assert body["timeWindowMs"] == 600_000
    assert body["totalOperations"] == len(body["stats"]) > 0
    assert STATS_FIELDS <= set(body["stats"][0])
    one = ok(client.get(f"{PERF}/stats", params={"operation": "job.check"}))
    assert one["stats"]["operationName"] == "job.check"
    assert one["stats"]["totalCalls"] >= 2  # two districts, several checks each
    assert one["timeWindowMs"] == 300_000  # the default


def test_stats_of_an_operation_without_data_is_404(worked: tuple[Console, httpx.Client]) -> None:
    _, client = worked
    body = refused(client.get(f"{PERF}/stats", params={"operation": "no.such"}), 404, "operation")
    assert "no.such" in body["error"]


def test_bottlenecks_report_resources_recommendations(
    worked: tuple[Console, httpx.Client],
) -> None:
    console, client = worked
    found = ok(client.get(f"{PERF}/bottlenecks"))
    counts = [found[f"{s}SeverityCount"] for s in ("high", "medium", "low")]
    assert sum(counts) == found["totalBottlenecks"] == len(found["bottlenecks"])
    report = ok(client.get(f"{PERF}/report", params={"timeWindow": 60_000}))
    assert set(report) == {"report", "generatedAt", "timeWindowMs"}
    summary = report["report"]["summary"]
    assert set(summary) == {
        "totalOperations",
        "uniqueOperations",
        "failures",
        "overallSuccessRate",
        "averageResponseTime",
    }
    assert summary["totalOperations"] > 0
    assert summary["uniqueOperations"] >= len(report["report"]["topOperations"]) > 0
    body = report["report"]
    assert set(body) == {
        *("summary", "topOperations", "bottlenecks", "resourceSummary"),
        *("recommendations", "source"),
    }
    figures = body["resourceSummary"]
    assert figures["dataPoints"] >= 1
    assert figures["averageMemoryMB"] == figures["figures"]["rssMb"]["avg"] > 0
    assert figures["peakCpuPercent"] == figures["figures"]["cpuPercent"]["peak"]
    resources = ok(client.get(f"{PERF}/resources"))
    assert resources["dataPoints"] == len(resources["metrics"]) >= 1
    sample = resources["metrics"][-1]
    assert sample["memoryUsageMB"] > 0  # real psutil figures, not hard-coded zeros
    assert "batchQueueDepth" in sample["figures"]
    (engine,) = [  # the engine's sample of that millisecond, under the seed's names
        s
        for s in console.monitor.resources().samples
        if round(s.at.timestamp() * 1000) == sample["timestamp"]
    ]
    assert sample["process"] == engine.process
    assert sample["figures"] == {camel(k): v for k, v in engine.values.items()}
    assert sample["memoryUsageMB"] == engine.values["rss_mb"]
    assert sample["cpuUsagePercent"] == engine.values["cpu_percent"]
    assert sample["cacheHitRate"] == engine.values.get("cache_hit_rate")
    assert resources["summary"]["peakMemoryMB"] >= resources["summary"]["averageMemoryMB"] > 0
    advice = ok(client.get(f"{PERF}/optimization/recommendations"))
    priorities = [advice[f"{p}Priority"] for p in ("high", "medium", "low")]
    assert sum(priorities) == advice["totalRecommendations"] == len(advice["recommendations"])
    assert "generatedAt" in advice


def test_cache_statistics_and_clearing(worked: tuple[Console, httpx.Client]) -> None:
    console, client = worked
    ok(client.get(JOBS, params={"month": MONTH}))  # reads through the cache
    before = ok(client.get(f"{PERF}/cache"))
    assert set(before) == {"cache", "storage", "timestamp"}
    assert before["cache"]["size"] > 0 and before["cache"]["totalMisses"] > 0
    assert set(before["cache"]["layers"]) == {"jobs", "timelines", "status", "config", "snapshots"}
    stats = console.cache.stats()  # the engine's figures under the seed's names
    assert (before["cache"]["totalHits"], before["cache"]["totalMisses"]) == (
        stats.total.hits,
        stats.total.misses,
    )
    misses = {name: layer["misses"] for name, layer in before["cache"]["layers"].items()}
    assert misses == {name: layer.misses for name, layer in stats.layers.items()}
    assert before["cache"]["maxSize"] == stats.total.max_size
    assert {"hitRate", "pendingWrites", "cacheMaxSize"} <= set(before["storage"])
    cleared = ok(client.post(f"{PERF}/cache/clear", json={}))
    assert cleared["success"] and cleared["clearedItems"] == 1
    assert cleared["cacheEntriesCleared"] == before["cache"]["size"]
    assert cleared["storageEntriesCleared"] == 0
    assert console.cache.stats().total.size == 0
    both = ok(client.post(f"{PERF}/cache/clear", json={"clearCache": False, "clearStorage": True}))
    assert both["clearedItems"] == 1 and both["cacheEntriesCleared"] == 0
    assert console.storage.cache_stats().size == 0


# --- batches and jobs -------------------------------------------------------------------------


def test_a_batch_started_over_the_api_runs_to_completion(serve: Serve) -> None:
    console, client = serve(token=TOKEN, background=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    started = ok(
        client.post(
            f"{PERF}/batch/process",
            headers=auth,
            json={
                "jobs": [
                    {"districtId": "1", "targetMonth": MONTH},
                    {"districtId": "f", "targetMonth": MONTH, "priority": 5},
                ],
                "config": {"maxConcurrentJobs": 99, "retryAttempts": 2},
            },
        )
    )
    assert started["success"] and started["jobCount"] == 2
    assert started["config"]["maxConcurrentJobs"] <= 20 and started["config"]["retryAttempts"] == 2
    assert any("maxConcurrentJobs 99 clamped to 20" in n for n in started["notes"])
    assert started["batchIds"] == [started["batchId"]]
    batch = wait_until_done(client, started["batchId"])
    assert batch["status"] == "finished" and batch["counts"] == {"succeeded": 2}
    assert batch["progress"]["percent"] == 100.0
    assert {i["districtId"] for i in batch["items"]} == {"1", "F"}
    assert all(i["attempts"][0]["outcome"] == "succeeded" for i in batch["items"])
    # The API watches the same batch runner and storage that did the work.
    assert console.batch.progress(started["batchId"]).done
    jobs = ok(client.get(JOBS, params={"month": MONTH, "status": "completed"}))
    assert jobs["total"] == 2 and {j["districtId"] for j in jobs["jobs"]} == {"1", "F"}
    assert jobs["progress"]["percentFinalized"] == 100.0
    assert jobs["monthStatus"] == "closed"
    job = jobs["jobs"][0]
    assert job["reason"] in ("closing-ended", "stable", "window-reached")
    assert ok(client.get(f"{JOBS}/{job['id']}"))["checks"] == job["checks"] > 0
    timeline = ok(client.get(f"{JOBS}/{job['id']}/timeline"))
    assert timeline["total"] == len(timeline["entries"]) > 0
    assert {"asOf", "checkedAt", "dataMonth", "metrics", "changes", "significant"} <= set(
        timeline["entries"][0]
    )
    assert "membership" in timeline["entries"][0]["metrics"]


def test_jobs_start_conflict_and_cancel(serve: Serve) -> None:
    console, client = serve()  # the runner is not started: the work stays queued
    body = {"targetMonth": MONTH, "districtIds": ["1", "2", "2"], "priority": 1}
    started = ok(client.post(JOBS, json=body))
    assert started["jobCount"] == 2  # the repeated district is started once
    refused(client.post(JOBS, json=body), 409, "targetMonth")
    listed = ok(client.get(JOBS, params={"month": MONTH}))
    assert listed["monthStatus"] == "running"  # a batch of this process works it
    jobs = listed["jobs"]
    assert {j["status"] for j in jobs} == {"pending"}
    cancelled = ok(client.post(f"{JOBS}/{jobs[0]['id']}/cancel"))
    assert cancelled["status"] == "cancelled"
    assert console.storage.get_job(jobs[0]["id"]).status == "cancelled"
    items = ok(client.get(f"{PERF}/batch/{started['batchId']}"))["items"]
    assert {i["jobId"]: i["status"] for i in items}[jobs[0]["id"]] == "cancelled"
    refused(client.post(f"{JOBS}/{jobs[0]['id']}/cancel"), 409, "id")
    batch = ok(client.post(f"{PERF}/batch/{started['batchId']}/cancel"))
    assert batch["done"] and batch["status"] == "cancelled"
    refused(client.post(f"{PERF}/batch/{started['batchId']}/cancel"), 409, "id")
    listed = ok(client.get(JOBS, params={"month": MONTH}))
    assert {j["status"] for j in listed["jobs"]} == {"cancelled"}
    assert listed["progress"]["percentFinalized"] == 0.0, "a cancelled district is not final"


def test_cancelling_a_running_job_stops_its_work(serve: Serve) -> None:
    # Each fetch waits a minute on the attempt's cancel token: the replay cannot finish
    # before the cancel, and the cancel wakes it at once.
    console, client = serve(background=True, latency_ms=60_000)
    started_item = threading.Event()
    console.batch.listen(lambda event: event["type"] == "started" and started_item.set())
    started = ok(client.post(JOBS, json={"targetMonth": MONTH, "districtIds": ["7"]}))
    assert started_item.wait(DEADLINE_S), "the item never started"
    job_id = ok(client.get(JOBS, params={"month": MONTH}))["jobs"][0]["id"]
    assert ok(client.post(f"{JOBS}/{job_id}/cancel"))["status"] == "cancelled"
    batch = wait_until_done(client, started["batchId"])
    assert batch["counts"] == {"cancelled": 1}
    # The replay stopped: it did not finalize the job behind the cancel's back.
    assert ok(client.get(f"{JOBS}/{job_id}"))["status"] == "cancelled"
    assert console.storage.get_job(job_id).status == "cancelled"
    # Stopped, not final: the month is incomplete (run it again), as `recon status` says.
    assert ok(client.get(JOBS, params={"month": MONTH}))["monthStatus"] == "incomplete"


def test_an_unfinished_run_continues_and_says_so(serve: Serve) -> None:
    console, client = serve()
    console.reconciler.start_month(MONTH, ["1", "2"], mode="optimized")  # left by a dead run
    started = ok(client.post(JOBS, json={"targetMonth": MONTH, "districtIds": ["3"]}))
    assert started["jobCount"] == 2
    assert any("unfinished run: its districts 1, 2 continue" in n for n in started["notes"])


@pytest.mark.parametrize("unknown", [4242, 2**31, 10**16])  # beyond PostgreSQL's integer too
def test_unknown_ids_are_404(serve: Serve, unknown: int) -> None:
    _, client = serve()
    for path in (f"{JOBS}/{unknown}", f"{JOBS}/{unknown}/timeline", f"{PERF}/batch/{unknown}"):
        refused(client.get(path), 404, "id")
    for path in (f"{JOBS}/{unknown}/cancel", f"{PERF}/batch/{unknown}/cancel"):
        refused(client.post(path), 404, "id")


# --- validation and limits --------------------------------------------------------------------


BAD_JOBS = [
    ({"districtId": "1'; DROP TABLE jobs;--", "targetMonth": MONTH}, "jobs.0.districtId"),
    ({"districtId": "12345", "targetMonth": MONTH}, "jobs.0.districtId"),
    ({"districtId": "1", "targetMonth": "2025-13"}, "jobs.0.targetMonth"),
    ({"districtId": "1", "targetMonth": "1999-12"}, "jobs.0.targetMonth"),
    ({"districtId": "1", "targetMonth": "June"}, "jobs.0.targetMonth"),
    # other scripts' digits and a trailing newline (issue #18, defect 4): runs that never moved
    ({"districtId": "1", "targetMonth": "２０２５-06"}, "jobs.0.targetMonth"),
    ({"districtId": "1", "targetMonth": "٢٠٢٥-٠٦"}, "jobs.0.targetMonth"),
    ({"districtId": "1", "targetMonth": f"{MONTH}\n"}, "jobs.0.targetMonth"),
    ({"districtId": "４２", "targetMonth": MONTH}, "jobs.0.districtId"),
    ({"districtId": "42\n", "targetMonth": MONTH}, "jobs.0.districtId"),
    ({"districtId": "1", "targetMonth": MONTH, "priority": 10**6}, "jobs.0.priority"),
    ({"districtId": "1", "targetMonth": MONTH, "extra": 1}, "jobs.0.extra"),
    ({"targetMonth": MONTH}, "jobs.0.districtId"),
]


def test_batch_validation_names_the_field(serve: Serve) -> None:
    console, client = serve()
    for job, field in BAD_JOBS:
        refused(client.post(f"{PERF}/batch/process", json={"jobs": [job]}), 422, field)
    assert console.storage.runs() == []  # nothing was started


def test_more_validation_errors(serve: Serve) -> None:
    _, client = serve()
    refused(client.post(f"{PERF}/batch/process", json={"jobs": []}), 422, "jobs")
    refused(client.post(f"{PERF}/batch/process", content=b"{not json"), 422, "body")
    refused(
        client.post(JOBS, json={"targetMonth": MONTH, "districtIds": ["?"]}), 422, "districtIds.0"
    )
    refused(client.get(JOBS, params={"month": "2025-6"}), 422, "month")
    for month in ("２０２５-06", f"{MONTH}\n"):
        refused(
            client.post(JOBS, json={"targetMonth": month, "districtIds": ["1"]}), 422, "targetMonth"
        )
        refused(client.get(JOBS, params={"month": month}), 422, "month")
    refused(client.get(JOBS), 422, "month")
    refused(client.get(JOBS, params={"month": MONTH, "status": "done"}), 422, "status")
    refused(client.get(f"{JOBS}/0"), 422, "job_id")
    refused(client.get(f"{JOBS}/{2**70}"), 422, "job_id")


def test_bad_time_windows(serve: Serve) -> None:
    _, client = serve()
    for view in ("stats", "bottlenecks", "report", "resources", "optimization/recommendations"):
        for window in ("0", "-5", "abc", str(30 * 86_400_000 + 1), "1e3"):
            response = client.get(f"{PERF}/{view}", params={"timeWindow": window})
            refused(response, 422, "timeWindow")


def test_oversized_bodies_get_413(serve: Serve) -> None:
    console, client = serve(max_body_bytes=2_000)
    jobs = [{"districtId": str(n), "targetMonth": MONTH} for n in range(100)]
    refused(client.post(f"{PERF}/batch/process", json={"jobs": jobs}), 413, "body")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds
        yield b'{"jobs": ['
        for _ in range(100):
            yield b'{"districtId": "1", "targetMonth": "2025-06"},'
        yield b"]}"

    refused(client.post(f"{PERF}/batch/process", content=chunks()), 413, "body")
    assert console.storage.runs() == []
    ok(client.post(f"{PERF}/cache/clear", json={"clearStorage": True}))  # small bodies pass


# --- security ---------------------------------------------------------------------------------


def test_token_is_required_by_posts_and_accepted(serve: Serve) -> None:
    _, client = serve(token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = client.post(f"{PERF}/cache/clear", json={}, headers=headers)
        refused(response, 401, "token")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    refused(client.post(JOBS, json={"targetMonth": MONTH}), 401, "token")
    ok(client.post(f"{PERF}/cache/clear", headers={"Authorization": f"Bearer {TOKEN}"}))
    ok(client.get(f"{PERF}/cache"))  # reading needs no token


def test_without_a_token_posts_are_open(serve: Serve) -> None:
    _, client = serve()
    ok(client.post(f"{PERF}/cache/clear", json={"clearCache": True}))


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org"))


def test_recon_api_refuses_a_public_host_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECON_API_TOKEN", raising=False)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["api", "--host", "0.0.0.0", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "token" in err
    assert not (tmp_path / "cli.db").exists()  # refused before anything was opened


# --- operations -------------------------------------------------------------------------------


def test_healthz(serve: Serve, db_url: str) -> None:
    console, client = serve()
    health = ok(client.get("/healthz"))
    assert {k: health[k] for k in ("status", "database")} == {"status": "ok", "database": "ok"}
    assert health["watcher"]["running"] is False
    assert health["watcher"]["summary"] == "no watcher: start one with `recon watch`"
    with unreachable(db_url):
        console.storage.engine.dispose()
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "fail" and response.json()["database"]
        assert tempfile.gettempdir() not in response.text  # no local paths anyone may read
    assert ok(client.get("/healthz"))["status"] == "ok"


@contextmanager
def unreachable(db_url: str) -> Iterator[None]:
    """The database out of reach for the block: a SQLite file moved away, or a
    PostgreSQL database closed to connections."""
    if db_url.startswith("sqlite"):
        folder = Path(db_url.removeprefix("sqlite:///")).parent
        moved = folder.with_name(folder.name + "-moved")
        folder.rename(moved)  # the database file is gone from where the engine looks
        try:
            yield
        finally:
            moved.rename(folder)
        return
    with closed_to_connections(db_url):
        yield


def test_metrics_parse_and_show_the_engine(worked: tuple[Console, httpx.Client]) -> None:
    console, client = worked
    ok(client.get(JOBS, params={"month": MONTH}))
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    calls = {s.labels["operation"]: s.value for s in families["recon_operation_calls"].samples}
    assert calls["job.check"] >= 2
    quantiles = {s.labels["quantile"] for s in families["recon_operation_latency_seconds"].samples}
    assert quantiles == {"0.5", "0.95", "0.99"}
    misses = {s.labels["layer"]: s.value for s in families["recon_cache_misses"].samples}
    assert misses["status"] == console.cache.stats().layers["status"].misses > 0
    for name in ("recon_batch_queue_depth", "recon_storage_pending_writes", "recon_cache_hits"):
        assert name in families
    # A second app on the same console has its own registry: nothing is global.
    with serving(create_app(console)) as url:
        again = httpx.get(f"{url}/metrics")
    assert "recon_operation_calls" in again.text


def test_openapi_documents_every_endpoint(serve: Serve) -> None:
    _, client = serve()
    schema = ok(client.get("/openapi.json"))
    expected = [
        (f"{PERF}/stats", "get"),
        (f"{PERF}/bottlenecks", "get"),
        (f"{PERF}/report", "get"),
        (f"{PERF}/cache", "get"),
        (f"{PERF}/cache/clear", "post"),
        (f"{PERF}/resources", "get"),
        (f"{PERF}/batch/process", "post"),
        (f"{PERF}/optimization/recommendations", "get"),
        (f"{PERF}/batch/{{batch_id}}", "get"),
        (f"{PERF}/batch/{{batch_id}}/cancel", "post"),
        (JOBS, "post"),
        (JOBS, "get"),
        (f"{JOBS}/{{job_id}}", "get"),
        (f"{JOBS}/{{job_id}}/timeline", "get"),
        (f"{JOBS}/{{job_id}}/cancel", "post"),
        ("/healthz", "get"),
    ]
    for path, method in expected:
        responses = schema["paths"][path][method]["responses"]
        assert "$ref" in responses["200"]["content"]["application/json"]["schema"], path
        if method == "post":
            assert {"401", "413"} <= set(responses), path
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# --- `recon api` as a real process ------------------------------------------------------------


def test_recon_api_serves_over_real_http(tmp_path: Path, db_url: str) -> None:
    served = recon_api(tmp_path, db=db_url)
    with served as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        jobs = {"jobs": [{"districtId": "2", "targetMonth": "2025-03"}]}
        started = ok(client.post(f"{PERF}/batch/process", json=jobs))
        batch = wait_until_done(client, started["batchId"])
        assert batch["counts"] == {"succeeded": 1}
        done = ok(client.get(JOBS, params={"month": "2025-03"}))
        assert [j["status"] for j in done["jobs"]] == ["completed"]
    # What the server did is stored for the next process.
    console = Console(Settings().with_values("storage", db_url=db_url))
    try:
        assert [j.status for j in console.storage.jobs(month="2025-03")] == ["completed"]
    finally:
        console.close()


def test_healthz_and_metrics_report_the_watcher(serve: Serve) -> None:
    from engine.app.watcher import Watcher

    console, client = serve()
    watcher = Watcher(console, districts=["1"])
    assert watcher.claim(threading.Event(), wait=False)
    try:
        report = watcher.tick(every_s=60)
        shown = ok(client.get("/healthz"))["watcher"]
        assert shown["running"] is True and shown["pid"] == os.getpid()
        assert shown["openJobs"] == report.open_jobs and shown["ticks"] == 1
        assert shown["summary"].startswith(f"watcher on {shown['host']} pid {os.getpid()}")
        text = client.get("/metrics").text
        values = dict(line.split(" ") for line in text.splitlines() if line.startswith("recon_w"))
        assert float(values["recon_watcher_open_jobs"]) == report.open_jobs
        assert float(values["recon_watcher_last_tick_timestamp_seconds"]) == pytest.approx(
            report.at.timestamp()
        )
    finally:
        watcher.close()
    assert ok(client.get("/healthz"))["watcher"]["running"] is False


def test_the_apis_reads_are_labelled_api_and_kept_out_of_the_engines_figures(
    serve: Serve,
) -> None:
    console, client = serve()
    console.start_batch(MONTH, districts=["1"])
    console.batch.run(until_idle=True)
    console.cache.clear()  # the API's first reads miss, so the monitor sees them all

    def calls() -> dict[str, int]:
        return {op: len(records) for op, records in console.recorder.calls()}

    engine_before = calls()
    jobs = ok(client.get(JOBS, params={"month": MONTH}))
    ok(client.get(f"{JOBS}/{jobs['jobs'][0]['id']}/timeline"))
    after = calls()
    api_ops = {op for op in after if op.startswith("api:")}
    assert "api:cache.get" in api_ops, sorted(after)
    labels = [r[3] for op, records in console.recorder.calls() if op in api_ops for r in records]
    assert labels and all(lab and lab["origin"] == "api" for lab in labels)
    engine_ops = {op: n for op, n in after.items() if ":" not in op}
    assert engine_ops == {op: n for op, n in engine_before.items() if ":" not in op}
