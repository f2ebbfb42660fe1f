"""Shared fixtures of the reliability suite.

``figures`` records what a test set up (``figures.config``) and what it counted
in the run (``figures.measure``); at the end of the session the figures, each
test's outcome, the commit and the time go to ``test-output/reliability.json``,
which ``make reliability`` turns into RELIABILITY.md. Record before asserting,
so that a failing test still reports what it saw. ``SOAK=1`` selects the full sizes.

``uninterrupted`` runs ``recon run`` once per argument list and session, and
gives its whole database state: the reference a faulted run is compared with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.cli.core import main

from .state import State, dump

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "reliability.json"
HERE = "tests/reliability/"
NOT_THE_PRODUCT = ("tests/reliability/test_report.py",)  # checks the report, not the engine
MONTH = "2025-03"

_lock = threading.Lock()
_session: dict[str, dict[str, object]] = {"outcomes": {}, "figures": {}}
_started = time.time()


def soak() -> bool:
    return os.environ.get("SOAK") == "1"


def districts() -> str:
    """The districts of a ``recon run`` of the suite, comma-separated."""
    n = 100 if soak() else 24
    return ",".join(str(i) for i in range(1, n + 1))


def run_args(db: Path | None = None) -> list[str]:
    """``recon run`` of the suite's month and districts (on ``db`` if given)."""
    args = ["run", "--month", MONTH, "--districts", districts()]
    return [*args, "--db", f"sqlite:///{db}"] if db is not None else args


def recon(*args: str) -> list[str]:
    """The command line of ``recon`` from this worktree, for a subprocess."""
    return [sys.executable, "-m", "engine.cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any RECON_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    return {**env, **extra}


class Figures:
    """One test's figures: what it set up, apart from what it counted."""

    def __init__(self) -> None:
        self.configured: dict[str, object] = {}
        self.measured: dict[str, object] = {}

    def config(self, **values: object) -> None:
        """Values the test chose (sizes, fault rates, thread counts): not results."""
        self.configured.update(values)

    def measure(self, **values: object) -> None:
        """Values counted from what the run did (rows, exit codes, errors, times)."""
        self.measured.update(values)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    found = Figures()
    yield found
    if found.configured or found.measured:
        with _lock:  # the runs of a parametrized test add to one entry (name their figures)
            entry = _session["figures"].setdefault(
                request.node.originalname, {"nodeid": request.node.nodeid}
            )
            entry.setdefault("config", {}).update(found.configured)
            entry.setdefault("measured", {}).update(found.measured)


Reference = Callable[[Sequence[str]], State]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """``recon`` ARGS (without ``--db``) run once, uninterrupted: its database state."""
    done: dict[tuple[str, ...], State] = {}

    def state(args: Sequence[str]) -> State:
        key = tuple(args)
        if key not in done:
            db = tmp_path_factory.mktemp("uninterrupted") / "straight.db"
            assert main([*args, "--db", f"sqlite:///{db}"]) == 0
            done[key] = dump(db)
        return done[key]

    return state


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each reliability test's outcome: a failed setup, call or teardown fails it."""
    if not report.nodeid.startswith(HERE) or report.nodeid.startswith(NOT_THE_PRODUCT):
        return
    outcomes = _session["outcomes"]
    if report.failed:
        outcomes[report.nodeid] = "failed"
    elif report.when == "call" or (report.skipped and report.nodeid not in outcomes):
        outcomes.setdefault(report.nodeid, report.outcome)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the session's figures and outcomes, if any reliability test ran."""
    if not _session["outcomes"]:
        return
    OUTPUT.parent.mkdir(exist_ok=True)
    record = {
        **_session,
        "size": "soak" if soak() else "ci",
        "started": datetime.fromtimestamp(_started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - _started),
        **git_revision(),
    }
    OUTPUT.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))


def git_revision() -> dict[str, object]:
    """The commit the suite ran on, and whether the working tree had other changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = [
        line for line in git("status", "--porcelain").splitlines()
        if not line.endswith(("RELIABILITY.md", "test-output/"))
    ]  # fmt: skip
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(changed)}
