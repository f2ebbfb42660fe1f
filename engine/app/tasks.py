"""Background tasks: long engine work started from a UI, watched by polling.

A task is a function run on its own daemon thread. It receives a ``report``
callback to say how far it got; any thread may read its :class:`TaskStatus`::

    task_id = registry.start("compare", lambda report: work(on_progress=report))
    registry.status(task_id)   # state, done/total, message, result or error

The dashboard starts tasks here (never on Streamlit's threads) and polls them
from a fragment. The registry keeps the last :data:`KEEP` tasks.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine.clock import Clock, SystemClock
from engine.errors import ConfigError, EngineError

KEEP = 50
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"

Report = Callable[[int, int, str], None]
"""``report(done, total, message)``: progress of a task, from its own thread."""


@dataclass(frozen=True)
class TaskStatus:
    task_id: int
    name: str
    state: str
    """running, succeeded or failed."""
    done: int
    total: int
    message: str
    started_at: datetime
    finished_at: datetime | None
    result: Any
    error: str | None
    """The error's message; an unexpected error is prefixed with its type."""

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def fraction(self) -> float:
        """Share done, 0..1 (1 once finished)."""
        if self.finished:
            return 1.0
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


class TaskRegistry:
    """Runs tasks on daemon threads and keeps their status. Thread-safe."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._tasks: OrderedDict[int, TaskStatus] = OrderedDict()
        self._threads: dict[int, threading.Thread] = {}

    def start(self, name: str, fn: Callable[[Report], Any], *, total: int = 0) -> int:
        """Run ``fn(report)`` in the background; return the task's id. ``total``: the
        work's size when known at the start, so that progress starts at "0 of total"."""
        with self._lock:
            task_id = next(self._ids)
            self._tasks[task_id] = TaskStatus(
                task_id, name, RUNNING, 0, total, "starting", self._clock.now(), None, None, None
            )
            self._forget_old()
            thread = threading.Thread(
                target=self._run, args=(task_id, fn), name=f"task-{task_id}", daemon=True
            )
            self._threads[task_id] = thread
        thread.start()
        return task_id

    def status(self, task_id: int) -> TaskStatus:
        with self._lock:
            found = self._tasks.get(task_id)
        if found is None:
            raise ConfigError("task_id", task_id, "no such task (finished tasks are kept a while)")
        return found

    def recent(self) -> list[TaskStatus]:
        """Every kept task, newest first."""
        with self._lock:
            return list(reversed(self._tasks.values()))

    def wait(self, task_id: int, timeout_s: float | None = None) -> TaskStatus:
        """Block until the task ends (or the timeout passes); return its status."""
        with self._lock:
            thread = self._threads.get(task_id)
        if thread is not None:
            thread.join(timeout_s)
        return self.status(task_id)

    def _run(self, task_id: int, fn: Callable[[Report], Any]) -> None:
        def report(done: int, total: int, message: str) -> None:
            self._update(task_id, done=done, total=total, message=message)

        try:
            result = fn(report)
        except EngineError as exc:
            self._end(task_id, FAILED, error=str(exc))
        except Exception as exc:  # a bug must end the task visibly, not kill it silently
            self._end(task_id, FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            self._end(task_id, SUCCEEDED, result=result)

    def _update(self, task_id: int, **changes: Any) -> None:
        with self._lock:
            current = self._tasks.get(task_id)
            if current is not None:
                self._tasks[task_id] = replace(current, **changes)

    def _end(
        self, task_id: int, state: str, *, result: Any = None, error: str | None = None
    ) -> None:
        message = "done" if state == SUCCEEDED else "failed"
        self._update(
            task_id,
            state=state,
            result=result,
            error=error,
            message=message,
            finished_at=self._clock.now(),
        )
        with self._lock:
            self._threads.pop(task_id, None)

    def _forget_old(self) -> None:
        finished = [t.task_id for t in self._tasks.values() if t.finished]
        for task_id in finished[: max(0, len(self._tasks) - KEEP)]:
            del self._tasks[task_id]


__all__ = ["KEEP", "Report", "TaskRegistry", "TaskStatus"]
