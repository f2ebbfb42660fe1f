from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from engine.app.tasks import KEEP, Report, TaskRegistry
from engine.clock import FakeClock
from engine.errors import ConfigError


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry(clock=FakeClock(datetime(2025, 7, 1, tzinfo=UTC)))


def test_a_task_reports_progress_then_its_result(registry: TaskRegistry) -> None:
    reported, release = threading.Event(), threading.Event()

    def work(report: Report) -> dict[str, float]:
        report(1, 4, "first of four")
        reported.set()
        release.wait()
        return {"speedup": 12.0}

    task_id = registry.start("compare", work)
    assert reported.wait(10)
    running = registry.status(task_id)
    assert (running.state, running.done, running.total) == ("running", 1, 4)
    assert running.message == "first of four" and running.fraction == 0.25
    assert not running.finished and running.finished_at is None

    release.set()
    done = registry.wait(task_id)
    assert done.state == "succeeded" and done.result == {"speedup": 12.0}
    assert done.fraction == 1.0 and done.error is None
    assert done.started_at == done.finished_at == datetime(2025, 7, 1, tzinfo=UTC)


def test_errors_end_the_task_with_a_message(registry: TaskRegistry) -> None:
    def refused(report: Report) -> None:
        raise ConfigError("districts", 0, "expected 1 to 130")

    def broken(report: Report) -> None:
        raise ValueError("boom")

    engine_error = registry.wait(registry.start("refused", refused))
    assert engine_error.state == "failed"
    assert engine_error.error == "districts=0: expected 1 to 130"
    bug = registry.wait(registry.start("broken", broken))
    assert bug.state == "failed" and bug.error == "ValueError: boom" and bug.result is None


def test_unknown_tasks_are_refused(registry: TaskRegistry) -> None:
    with pytest.raises(ConfigError, match="no such task"):
        registry.status(99)


def test_old_finished_tasks_are_forgotten(registry: TaskRegistry) -> None:
    ids = [
        registry.wait(registry.start(f"t{n}", lambda report, n=n: n)).task_id
        for n in range(KEEP + 5)
    ]
    kept = registry.recent()
    assert len(kept) == KEEP
    assert [t.task_id for t in kept] == ids[::-1][:KEEP], "newest first, oldest dropped"
