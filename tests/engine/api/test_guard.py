"""Without a token, other sites' pages can neither drive nor read the API (real HTTP).

A cross-site form POST must change nothing in the engine; a DNS-rebound name
(``Host: evil.example``) must not be served; same-origin pages and clients
without Origin or Referer (curl, httpx, the CLI) keep working. With a token,
the token is the guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.app.console import Console
from tests.engine.api.procs import recon_api
from tests.engine.api.test_api import (
    JOBS,
    MONTH,
    PERF,
    TOKEN,
    make_served,
    ok,
    wait_until_done,
)

EVIL = "http://evil.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what a plain HTML form sends


@pytest.fixture
def working(db_url: str) -> Iterator[tuple[Console, httpx.Client, int]]:
    """A served console without a token, a batch of it still running (its runner is not
    started) and entries in its cache."""
    with ExitStack() as stack:
        console, client = make_served(stack, db_url)
        batch_id = console.start_batch(MONTH, districts=["1", "2"]).batch_id
        ok(client.get(JOBS, params={"month": MONTH}))  # fills the cache
        assert console.cache.stats().total.size > 0
        yield console, client, batch_id


def port_of(client: httpx.Client) -> int:
    port = client.base_url.port
    assert port is not None
    return port


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},  # sandboxed frames, file:// pages
        {"Referer": f"{EVIL}/page.html"},  # a browser that sent no Origin
        {"Origin": "http://127.0.0.1:1"},  # another local server
        {"Origin": "http://localhost"},  # port 80, not ours
    ],
)
def test_cross_site_posts_are_refused_and_change_nothing(
    working: tuple[Console, httpx.Client, int], headers: dict[str, str]
) -> None:
    console, client, batch_id = working
    cached = console.cache.stats().total.size
    for path in (f"{PERF}/batch/{batch_id}/cancel", f"{PERF}/cache/clear", JOBS):
        refused = client.post(path, headers={**FORM, **headers}, content=b"clearCache=true")
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == "Origin"
        assert "cross-site" in refused.json()["error"]
    assert console.batch.batch_detail(batch_id).info.status == "running"
    assert {j.status for j in console.storage.jobs(month=MONTH)} == {"pending"}
    assert console.cache.stats().total.size == cached


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "127.0.0.1:1"]
)
def test_foreign_host_headers_are_not_served(
    working: tuple[Console, httpx.Client, int], host: str
) -> None:
    _, client, batch_id = working
    host = host.format(port=port_of(client))
    for path in (f"{JOBS}?month={MONTH}", f"{PERF}/batch/{batch_id}", "/healthz", "/metrics"):
        refused = client.get(path, headers={"Host": host})
        assert refused.status_code == 421, refused.text
        assert refused.json()["field"] == "Host" and "DNS rebinding" in refused.json()["error"]
        assert MONTH not in refused.text


def test_own_hosts_and_same_origin_posts_work(working: tuple[Console, httpx.Client, int]) -> None:
    console, client, batch_id = working
    port = port_of(client)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert ok(client.get(JOBS, params={"month": MONTH}, headers={"Host": host}))["total"] == 2
    same = {"Origin": f"http://localhost:{port}", "Referer": f"http://127.0.0.1:{port}/docs"}
    assert ok(client.post(f"{PERF}/cache/clear", headers=same))["cacheEntriesCleared"] > 0
    page = {"Referer": f"http://127.0.0.1:{port}/docs"}  # the API's own /docs page
    assert ok(client.post(f"{PERF}/batch/{batch_id}/cancel", headers=page))["done"]
    assert console.batch.batch_detail(batch_id).info.status == "cancelled"


def test_clients_without_origin_or_referer_may_post(
    working: tuple[Console, httpx.Client, int],
) -> None:
    console, client, batch_id = working
    assert "origin" not in client.headers and "referer" not in client.headers
    assert ok(client.post(f"{PERF}/batch/{batch_id}/cancel"))["status"] == "cancelled"


def test_with_a_token_the_token_is_the_guard(tmp_path: Path) -> None:
    with ExitStack() as stack:
        console, client = make_served(stack, tmp_path / "token.db", token=TOKEN)
        auth = {"Authorization": f"Bearer {TOKEN}", "Origin": EVIL}
        ok(client.get(JOBS, params={"month": MONTH}, headers={"Host": "api.example.org"}))
        cleared = client.post(f"{PERF}/cache/clear", headers={"Origin": EVIL})
        assert cleared.status_code == 401
        ok(client.post(f"{PERF}/cache/clear", headers=auth))


def test_recon_api_refuses_cross_site_requests(tmp_path: Path) -> None:
    with recon_api(tmp_path) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        started: dict[str, Any] = ok(
            client.post(JOBS, json={"targetMonth": MONTH, "districtIds": ["7"]})
        )
        evil = client.post(f"{PERF}/batch/{started['batchId']}/cancel", headers={"Origin": EVIL})
        assert evil.status_code == 403
        rebound = client.get(f"{PERF}/batch/{started['batchId']}", headers={"Host": "evil.example"})
        assert rebound.status_code == 421
        own = {"Origin": url.replace("127.0.0.1", "localhost")}
        assert ok(client.post(f"{PERF}/cache/clear", headers=own))["success"]
        # The refused cancel changed nothing: the batch ran to its end.
        assert wait_until_done(client, started["batchId"])["counts"] == {"succeeded": 1}
