"""Faults from the source over real HTTP: transient ones are retried until every
job completes with the state of a run without faults; permanent ones fail only
the jobs concerned, with the error kept, and leave the other jobs as they would be."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from engine.app.console import Console
from engine.settings import Settings
from engine.sources.sim import Simulator, SimulatorServer, serve_simulator

from .conftest import MONTH, Figures, soak
from .state import State, compare, dump, only

SEED = 42
# The run's source is the server's URL, whose port differs from the reference server's;
# each retry of a job's replay counts one more attempt, by design.
FAULTED_SERVER = ("runs.source", "jobs.attempts")


def console_for(db: Path, url: str, retries: int = 3) -> Console:
    """A console on the HTTP source; ``retries`` per check (a flaky source wants more)."""
    settings = (
        Settings()
        .with_values("storage", db_url=f"sqlite:///{db}")
        .with_values("source", source=url, http_timeout_s=1.0)
        .with_values("batch", retry_delay_ms=100, retry_attempts=retries, max_concurrent_jobs=5)
    )
    return Console(settings)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    with serve_simulator(Simulator(seed=SEED), hang_s=5.0, **request.param) as srv:
        yield srv


Attempts = dict[str, list[tuple[str, str | None]]]


def run_month(db: Path, url: str, districts: Sequence[str], retries: int = 3) -> Attempts:
    """Work ``districts`` of the month from ``url``; each district's attempts (outcome, error)."""
    console = console_for(db, url, retries)
    try:
        batch = console.start_batch(MONTH, districts=districts).batch_id
        console.batch.run(until_idle=True)
        detail = console.batch.batch_detail(batch)
    finally:
        console.close()
    return {i.spec["district"]: [(a.outcome, a.error) for a in i.attempts] for i in detail.items}


def without_faults(db: Path, districts: Sequence[str]) -> State:
    """The state of the same month from a server of the same seed that never fails."""
    with serve_simulator(Simulator(seed=SEED)) as clean:
        run_month(db, clean.url, districts)
    return dump(db)


def jobs_by_status(state: State) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, row in state.items():
        if key.kind == "job":
            found.setdefault(str(row["status"]), []).append(key.district)
    return found


@pytest.mark.parametrize("server", [{"failure_rate": 0.3}], indirect=True)
def test_thirty_percent_transient_failures_every_job_completes(
    tmp_path: Path, server: SimulatorServer, figures: Figures
) -> None:
    districts = [str(i) for i in range(1, (40 if soak() else 10) + 1)]
    # Four failures in a row of one check are likely at 30 % over ~100 checks;
    # ten retries make eleven in a row (p = 2e-6 a check) what it takes to fail.
    outcomes = run_month(tmp_path / "faults.db", server.url, districts, retries=10)
    got = dump(tmp_path / "faults.db")
    diff = compare(without_faults(tmp_path / "clean.db", districts), got, ignore=FAULTED_SERVER)
    failed = [e for tried in outcomes.values() for outcome, e in tried if outcome != "succeeded"]
    timeouts = [e for e in failed if "timed out" in (e or "").lower() or "timeout" in (e or "")]
    by_status = jobs_by_status(got)
    figures.config(failure_rate=0.3, districts=len(districts), retries=10)
    figures.measure(requests=server.requests(), failed_attempts_retried=len(failed),
                    timeouts=len(timeouts), jobs={k: len(v) for k, v in by_status.items()},
                    **diff.figures())  # fmt: skip

    assert {k: sorted(v) for k, v in by_status.items()} == {"completed": sorted(districts)}
    assert len(failed) >= len(districts) // 2, "faults were injected but no retry was recorded"
    assert timeouts
    assert diff.none, diff.describe()


@pytest.mark.parametrize("server", [{"malformed": {"7"}, "missing": {"9"}}], indirect=True)
def test_permanent_failures_fail_only_their_jobs_with_the_error_kept(
    tmp_path: Path, server: SimulatorServer, figures: Figures
) -> None:
    districts, broken = ["5", "7", "8", "9"], {"7", "9"}
    outcomes = run_month(tmp_path / "faults.db", server.url, districts)
    got = dump(tmp_path / "faults.db")
    expected = without_faults(tmp_path / "clean.db", districts)
    others = sorted(set(districts) - broken)
    diff = compare(only(expected, districts=others), only(got, districts=others))
    jobs = {k.district: row for k, row in got.items() if k.kind == "job"}
    errors = {d: str(jobs[d]["error"] or "") for d in broken}
    figures.config(districts=len(districts), malformed_export="7", missing_district="9")
    figures.measure(
        jobs_failed=sorted(d for d, j in jobs.items() if j["status"] == "failed"),
        permanent_attempts=sum(o == "permanent" for tried in outcomes.values() for o, _ in tried),
        error_names_the_line="line" in errors["7"], error_names_404="404" in errors["9"],
        **{f"other_districts_{k}": v for k, v in diff.figures().items()},
    )  # fmt: skip

    assert jobs["5"]["status"] == jobs["8"]["status"] == "completed"
    assert jobs["7"]["status"] == jobs["9"]["status"] == "failed"
    assert "line" in errors["7"]  # the parse error names where
    assert "404" in errors["9"]
    assert [o for o, _ in outcomes["7"]] == [o for o, _ in outcomes["9"]] == ["permanent"], outcomes
    assert diff.none, diff.describe()
