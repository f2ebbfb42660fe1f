"""Faults from the source over real HTTP: transient ones are retried until every
job completes; permanent ones fail only the jobs concerned, with the error kept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.app.console import Console
from engine.settings import Settings
from engine.sources.sim import Simulator, SimulatorServer, serve_simulator

from .conftest import soak

MONTH = "2025-03"


def console_for(tmp_path: Path, url: str, retries: int = 3) -> Console:
    """A console on the HTTP source; ``retries`` per check (a flaky source wants more)."""
    settings = (
        Settings()
        .with_values("storage", db_url=f"sqlite:///{tmp_path / 'faults.db'}")
        .with_values("source", source=url, http_timeout_s=1.0)
        .with_values("batch", retry_delay_ms=100, retry_attempts=retries, max_concurrent_jobs=5)
    )
    return Console(settings)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    with serve_simulator(Simulator(seed=42), hang_s=5.0, **request.param) as srv:
        yield srv


def attempts(console: Console, batch_id: int) -> dict[str, list[tuple[str, str | None]]]:
    """Each district's attempts: (outcome, error)."""
    detail = console.batch.batch_detail(batch_id)
    return {i.spec["district"]: [(a.outcome, a.error) for a in i.attempts] for i in detail.items}


@pytest.mark.parametrize("server", [{"failure_rate": 0.3}], indirect=True)
def test_thirty_percent_transient_failures_every_job_completes(
    tmp_path: Path, server: SimulatorServer, figures: Callable[..., None]
) -> None:
    districts = [str(i) for i in range(1, (40 if soak() else 10) + 1)]
    # Four failures in a row of one check are likely at 30 % over ~100 checks;
    # ten retries make eleven in a row (p = 2e-6 a check) what it takes to fail.
    console = console_for(tmp_path, server.url, retries=10)
    try:
        batch = console.start_batch(MONTH, districts=districts).batch_id
        console.batch.run(until_idle=True)
        jobs = console.storage.jobs(month=MONTH)
        outcomes = attempts(console, batch)
    finally:
        console.close()
    assert [j.status.value for j in jobs] == ["completed"] * len(districts)
    failed = [e for tried in outcomes.values() for outcome, e in tried if outcome != "succeeded"]
    assert len(failed) >= len(districts) // 2, "faults were injected but no retry was recorded"
    assert any("timed out" in (e or "").lower() or "timeout" in (e or "").lower() for e in failed)
    figures(requests=server.requests(), failed_attempts_retried=len(failed),
            jobs=len(jobs), jobs_completed=len(jobs), lost=0)  # fmt: skip


@pytest.mark.parametrize("server", [{"malformed": {"7"}, "missing": {"9"}}], indirect=True)
def test_permanent_failures_fail_only_their_jobs_with_the_error_kept(
    tmp_path: Path, server: SimulatorServer, figures: Callable[..., None]
) -> None:
    console = console_for(tmp_path, server.url)
    try:
        batch = console.start_batch(MONTH, districts=["5", "7", "8", "9"]).batch_id
        console.batch.run(until_idle=True)
        jobs = {j.district: j for j in console.storage.jobs(month=MONTH)}
        outcomes = attempts(console, batch)
    finally:
        console.close()
    assert jobs["5"].status.value == jobs["8"].status.value == "completed"
    assert jobs["7"].status.value == jobs["9"].status.value == "failed"
    assert "line" in (jobs["7"].error or "")  # the parse error names where
    assert "404" in (jobs["9"].error or "")
    assert [o for o, _ in outcomes["7"]] == [o for o, _ in outcomes["9"]] == ["permanent"], outcomes
    figures(permanent_faults=2, jobs_failed=2, other_jobs_completed=2, lost=0)
