"""A ``recon worker`` process: runs batch items deferred by the procrastinate runner.

:func:`serve` runs a procrastinate worker whose task (:data:`~engine.batch.distributed.TASK`)
calls :meth:`ItemWorker.run`; the items go through the console's own ``execute``,
``should_skip`` and event listeners, as in the thread runner. An item:

1. is recorded cancelled (and not run) if its batch or itself was cancelled, and
   skipped if ``should_skip`` says its job is already completed;
2. takes one of the batch's ``maxConcurrentJobs`` slots shared by every worker
   (:class:`~engine.store.taskqueue.Slots`), waiting for one;
3. runs one attempt with a :class:`CancelToken` that a watchdog cancels at
   ``timeoutMs``, when procrastinate asks to abort the job (a user's cancel),
   or when the worker shuts down (the item is then queued again);
4. records the attempt, then: finished, or retried by procrastinate after the
   delay of :mod:`~engine.batch.policy` (transient errors and timeouts only).

With ``watch``, the worker also registers the watcher's tick as a procrastinate
periodic task (:data:`~engine.batch.distributed.WATCH_TASK`): procrastinate defers
one job per period whatever the number of workers, and one worker runs it.

Every few seconds (:data:`HEARTBEAT_S`) the worker writes its heartbeat and running
items into ``workers`` and hands back to the queue the jobs of workers whose
procrastinate heartbeat is older than ``stallTimeoutS`` (procrastinate's stalled
jobs): another worker runs them again. It also queues again its own jobs whose end
procrastinate could not write (:meth:`WorkerProcess._queue_lost_ends`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from procrastinate import JobContext
from procrastinate.exceptions import AppNotOpen as ProcrastinateAppClosed
from procrastinate.exceptions import ConnectorException, JobAborted
from procrastinate.job_context import AbortReason

from engine.batch.distributed import (
    TASK,
    WATCH_TASK,
    DistributedRunner,
    RetryItem,
    apply_schema,
    ended_row,
    make_app,
    settings_of,
    watch_cron,
)
from engine.batch.events import event
from engine.batch.memory import MemoryReader, process_memory_reader
from engine.batch.policy import INTERRUPTED, classify, next_retry, retry_delay
from engine.batch.records import FINISHED, Spec, attempt_json, describe, history_json, queued_row
from engine.batch.worker import Execute
from engine.cancel import CancelToken
from engine.clock import Clock
from engine.domain.models import BatchStatus, ItemState
from engine.errors import StorageError
from engine.settings import BatchSettings
from engine.store.batches import ItemRow
from engine.store.taskqueue import Slot, Slots, Waiter
from engine.store.workers import SqlWorkerStore

log = logging.getLogger(__name__)

Watch = tuple[float, Callable[[], str]]
"""The watcher's period in seconds and its tick (returns the tick's line)."""

_RECONNECT_MAX_S = 5.0  # the longest wait between two tries to reach a lost database
HEARTBEAT_S = 2.0
"""How often a worker writes its heartbeat (and looks for stalled jobs)."""
_POLL_S = 0.05  # the watchdog's step
_SLOT_WAIT_MAX_S = 0.1  # the longest step of a wait for a global slot

RUNNING, CANCELLED, SUCCEEDED = (s.value for s in (ItemState.RUNNING, ItemState.CANCELLED,
                                                   ItemState.SUCCEEDED))  # fmt: skip


class _Watchdog:
    """Cancels an attempt's token at its deadline, or when the job is to abort."""

    def __init__(self, token: CancelToken, context: JobContext, timeout_s: float) -> None:
        self.token = token
        self.stop: str | None = None  # CANCELLED (a user's abort) or INTERRUPTED (shutdown)
        self.timed_out = False
        self._context = context
        self._timeout_s = timeout_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="item-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        while not self._done.wait(_POLL_S):
            reason = self._context.abort_reason()
            if reason is not None:
                self.stop = INTERRUPTED if reason == AbortReason.SHUTDOWN else CANCELLED
                self.token.cancel("worker stopping" if self.stop == INTERRUPTED else "cancelled")
                return
            if time.monotonic() >= deadline:
                self.timed_out = True
                self.token.cancel(f"timed out after {self._timeout_s * 1000:.0f} ms", timeout=True)
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


class ItemWorker:
    """Runs items in a worker process; thread-safe (one thread per running item).

    Args:
        runner: the console's procrastinate runner (store, listeners).
        execute, should_skip: the console's, as the thread runner gets them.
        flush: commits the console's deferred writes (before an item is recorded done).
        forget: drops what the console's caches hold (other workers wrote meanwhile).
    """

    def __init__(
        self,
        runner: DistributedRunner,
        *,
        execute: Execute,
        should_skip: Callable[[Spec], bool],
        flush: Callable[[], object],
        forget: Callable[[], object],
        slots: Slots,
        clock: Clock,
        say: Callable[[str], None],
        rng: random.Random | None = None,
        memory: MemoryReader | None = None,
    ) -> None:
        self._runner = runner
        self._memory = memory or process_memory_reader()
        self._store = runner.store
        self._execute = execute
        self._should_skip = should_skip
        self._flush = flush
        self._forget = forget
        self._slots = slots
        self._clock = clock
        self._say = say
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.running: set[tuple[int, int]] = set()
        self.done = 0
        self.on_change: Callable[[], None] | None = None  # an item started or ended

    def run(self, context: JobContext, batch_id: int, item_id: int, spec: Spec) -> Any:
        """The task's body: one attempt of the item (see the module docstring)."""
        stored, row = self._store.item(batch_id, item_id)
        row = row or queued_row(batch_id, item_id)
        if row["status"] == CANCELLED:
            raise JobAborted("cancelled")  # the job ends as procrastinate's "aborted"
        if row["status"] in FINISHED:
            return None
        if stored.status != BatchStatus.RUNNING:
            self._end(row, spec, CANCELLED, None, "cancelled")
            raise JobAborted("cancelled")
        self._forget()
        if self._should_skip(spec):
            return self._end(row, spec, ItemState.SKIPPED.value, None, None)
        settings = settings_of(stored.config)
        with self._holding(batch_id, item_id):
            if not self._memory_allows(settings, context, batch_id):
                return self._stopped(row, spec, context, [], None)
            slot = self._slot(settings.max_concurrent_jobs, context)
            if slot is None:
                return self._stopped(row, spec, context, [], None)
            try:
                return self._attempt(context, settings, row, spec)
            finally:
                slot.release()

    def _attempt(
        self, context: JobContext, settings: BatchSettings, row: ItemRow, spec: Spec
    ) -> Any:
        history = self._history(row)
        number = len(history) + 1
        started, started_mono = self._clock.now(), self._clock.monotonic()
        running = attempt_json(number, started, 0.0, RUNNING, None, False)  # until it ends
        started_row = _with(row, RUNNING, number, [*history, running])
        if not self._store.record_item(started_row, self._clock.now())[0]:
            raise JobAborted("cancelled")  # while it waited for a slot
        token = CancelToken()
        watchdog = _Watchdog(token, context, settings.timeout_ms / 1000)
        outcome, value = SUCCEEDED, None
        try:
            value = self._execute(spec, token)
        except Exception as exc:
            outcome, value = classify(exc, stop=watchdog.stop, timed_out=watchdog.timed_out), exc
        finally:
            watchdog.close()
        self._flush()  # the item's work is committed before its row says so
        error = None if outcome == SUCCEEDED else describe(value)
        duration = self._clock.monotonic() - started_mono
        attempt = attempt_json(number, started, duration, outcome, error, token.steps > 0)
        texts = [*map(json.dumps, history), attempt]
        return self._conclude(context, settings, row, spec, outcome, value, texts)

    def _conclude(
        self,
        context: JobContext,
        settings: BatchSettings,
        row: ItemRow,
        spec: Spec,
        outcome: str,
        value: Any,
        history: list[str],
    ) -> Any:
        if outcome == SUCCEEDED:
            return self._end(_with(row, SUCCEEDED, len(history), history), spec, SUCCEEDED, value,
                             None)  # fmt: skip
        if outcome == INTERRUPTED and context.abort_reason() is None:
            # The database refused a write (not the item's fault): queued again later.
            queued = _with(row, ItemState.QUEUED.value, len(history), history)
            self._store.record_item(queued, self._clock.now())
            raise RetryItem(settings.retry_delay_ms / 1000, describe(value)) from value
        if outcome in (CANCELLED, INTERRUPTED):
            return self._stopped(row, spec, context, history, value)
        retry = next_retry(outcome, progressed=_progressed(history), retries=_retries(history),
                           budget=settings.retry_attempts)  # fmt: skip
        if retry is not None:
            delay = retry_delay(retry, settings.retry_delay_ms / 1000, self._rng)
            retrying = _with(row, ItemState.RETRYING.value, len(history), history)
            self._store.record_item(retrying, self._clock.now())
            self._say(f"batch {row['batch_id']} item {row['item_id']}: {describe(value)}; "
                      f"retry {retry} in {delay:.2f} s")  # fmt: skip
            raise RetryItem(delay, describe(value)) from value
        failed = _with(row, ItemState.FAILED.value, len(history), history)
        self._end(failed, spec, ItemState.FAILED.value, None, describe(value))
        raise value

    def _stopped(
        self, row: ItemRow, spec: Spec, context: JobContext, history: list[str], value: Any
    ) -> Any:
        """The attempt was stopped: by the worker's shutdown (queued again at once) or
        a cancel (recorded cancelled, and the job aborted)."""
        count = len(history) or row["attempts"]
        shutdown = context.abort_reason() == AbortReason.SHUTDOWN
        if shutdown:
            queued = _with(row, ItemState.QUEUED.value, count, history or self._history(row))
            self._store.record_item(queued, self._clock.now())
            raise RetryItem(0.0, "the worker stopped")
        cancelled = _with(row, CANCELLED, count, history or self._history(row))
        self._end(cancelled, spec, CANCELLED, None, "cancelled")
        raise JobAborted("cancelled")

    def _end(self, row: ItemRow, spec: Spec, state: str, result: Any, error: str | None) -> Any:
        """Record a finished item (its batch ends with its last one); tell listeners."""
        now = self._clock.now()
        ended = ended_row(row, state, now, error)
        ended["result"] = None if result is None else json.dumps(result, default=str)
        written, batch_ended = self._store.record_item(ended, now)
        with self._lock:
            self.done += 1
        b, n = row["batch_id"], row["item_id"]
        self._say(f"batch {b} item {n}: {state}" + (f" ({error})" if error else ""))
        # A cancelled item's job is cancelled again here, after this worker's last
        # writes of it (its canceller cancelled it while the attempt still ran).
        if state == CANCELLED or (written and state == ItemState.FAILED.value):
            self._runner.emit([event(state, b, n, spec, ended["attempts"], error)])
            self._flush()  # the job's new state too
        if batch_ended:
            self._say(f"batch {b}: every item recorded, batch ended")
        return result

    def _history(self, row: ItemRow) -> list[dict[str, Any]]:
        """The item's attempts; one still ``running`` is an attempt whose worker was
        lost: recorded as interrupted, lasting until its item ran again."""
        history: list[dict[str, Any]] = json.loads(row["history"])
        if history and history[-1].get("outcome") == RUNNING:
            last = history[-1]
            lasted = self._clock.now() - datetime.fromisoformat(last["started_at"])
            last.update(outcome=INTERRUPTED, error="its worker was lost",
                        duration_s=max(0.0, lasted.total_seconds()))  # fmt: skip
        return history

    def _memory_allows(self, settings: BatchSettings, context: JobContext, batch_id: int) -> bool:
        """Wait while this process's resident memory is above the batch's threshold
        (``enableResourceThrottling``, as the thread runner does), adding the wait to
        the batch's throttled seconds; False if the job is to abort meanwhile."""
        if not settings.enable_resource_throttling:
            return True
        started = self._clock.monotonic()
        try:
            while self._memory() > settings.memory_threshold_mb:
                if context.should_abort():
                    return False
                threading.Event().wait(_POLL_S)
        finally:
            waited = self._clock.monotonic() - started
            if waited >= _POLL_S:
                self._store.add_throttled(batch_id, waited)
        return True

    def _slot(self, limit: int, context: JobContext) -> Slot | None:
        """One of ``limit`` global slots, taken in priority order; None if the job is
        to abort meanwhile."""
        job = context.job
        waiter = Waiter(f"{job.task_kwargs['batch_id']}/{job.task_kwargs['item_id']}",
                        job.priority, job.id or 0)  # fmt: skip
        try:
            for tries in itertools.count():
                if (slot := self._slots.try_take(limit, waiter)) is not None:
                    break
                if context.should_abort():
                    self._slots.forget(waiter)
                    return None
                # the job ahead usually takes its slot within milliseconds: look again
                # soon, then less often (a full limit can last minutes)
                threading.Event().wait(min(_SLOT_WAIT_MAX_S, 0.005 * 2**tries))
        except BaseException:
            self._slots.forget(waiter)
            raise
        return slot

    @contextmanager
    def _holding(self, batch_id: int, item_id: int) -> Iterator[None]:
        with self._lock:
            self.running.add((batch_id, item_id))
        self._changed()
        try:
            yield
        finally:
            with self._lock:
                self.running.discard((batch_id, item_id))
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # the next heartbeat writes it
                log.warning("worker heartbeat failed", exc_info=True)

    def snapshot(self) -> tuple[list[tuple[int, int]], int]:
        with self._lock:
            return sorted(self.running), self.done


def _with(row: ItemRow, status: str, attempts: int, history: list[Any]) -> ItemRow:
    out = row.copy()
    texts = [h if isinstance(h, str) else json.dumps(h) for h in history]
    out["status"], out["attempts"], out["history"] = status, attempts, history_json(texts)
    out["error"], out["finished_at"] = None, None
    return out


def _progressed(history: list[str]) -> bool:
    return bool(json.loads(history[-1]).get("progressed"))


def _retries(history: list[str]) -> int:
    """Retries since the item last made progress (the attempt just made left out)."""
    count = 0
    for text in reversed(history[:-1]):
        attempt = json.loads(text)
        if attempt.get("progressed"):
            break
        count += attempt.get("outcome") != INTERRUPTED  # a lost worker's: not the item's
    return count


Beat = Callable[[int], Coroutine[Any, Any, None]]


def _tried_again(beat: Beat) -> Beat:
    """procrastinate's heartbeat write, tried again until it is written. procrastinate
    writes no heartbeat after one failed write (when its worker has no periodic task,
    nothing notices), and every worker then takes its running jobs for stalled."""

    async def written(worker_id: int) -> None:
        for tries in itertools.count():
            try:
                return await beat(worker_id)
            except ConnectorException as exc:
                log.warning("procrastinate heartbeat not written (%s); trying again", exc.__cause__)
                await asyncio.sleep(min(_RECONNECT_MAX_S, 0.25 * 2**tries))

    return written


# --- the worker process -----------------------------------------------------------------


class WorkerProcess:
    """One ``recon worker``: a procrastinate worker plus the ``workers`` row and heartbeat.

    Args:
        console: the process's console (its batch runner must be the procrastinate one).
        concurrency: items this worker runs at once.
        grace_s: on SIGINT/SIGTERM, running items get this long to finish, then are
            interrupted and queued again.
        say: prints a line (what the worker does).
    """

    def __init__(self, console: Any, *, concurrency: int, grace_s: float,
                 say: Callable[[str], None], watch: Watch | None = None) -> None:  # fmt: skip
        runner = console.batch
        if not isinstance(runner, DistributedRunner):
            raise TypeError("recon worker needs the procrastinate runner")
        self._console = console
        self._runner = runner
        self._concurrency = concurrency
        self._grace_s = grace_s
        self._say = say
        self._clock: Clock = console.clock
        self._store = SqlWorkerStore(console.storage)
        self.items = ItemWorker(
            runner, execute=runner.execute, should_skip=runner.should_skip,
            flush=console.storage.flush, forget=console.storage.clear_cache,
            slots=Slots(console.storage.engine, task=TASK), clock=self._clock, say=say,
        )  # fmt: skip
        self.worker_id: int | None = None
        self._watch = watch
        self._running: asyncio.Future[None] | None = None  # procrastinate's worker
        self._stopping = False  # a signal asked to stop
        self._tasks_lock = threading.Lock()
        self._in_task: set[int] = set()  # procrastinate jobs whose task runs now
        self._procrastinate_id: int | None = None  # procrastinate's worker of this process
        self._unended: set[int] = set()  # seen running without a task at the last beat

    def run(self) -> None:
        """Run until SIGINT or SIGTERM (a graceful stop: :meth:`_stop_asked`)."""
        apply_schema(self._console.storage.engine)
        asyncio.run(self._main())

    async def _main(self) -> None:
        # procrastinate runs each item in the loop's default executor, which has
        # min(32, CPUs + 4) threads: without enough, fetched items wait for a thread.
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(
            max_workers=self._concurrency + 4, thread_name_prefix="recon-item"
        ))  # fmt: skip
        app = make_app(self._runner.db_url, self._task)
        manager = app.job_manager
        manager.update_heartbeat = _tried_again(manager.update_heartbeat)  # type: ignore[method-assign,assignment]
        if self._watch is not None:
            every_s, tick = self._watch
            task = app.task(name=WATCH_TASK, pass_context=True)(self._ticker(tick))
            app.periodic(cron=watch_cron(every_s), periodic_id="watcher")(task)
        stall = self._runner.settings.stall_timeout_s
        await app.open_async()
        self.worker_id = self._store.register(
            socket.gethostname(), os.getpid(), self._concurrency, self._clock.now()
        )
        self.items.on_change = self._beat
        self._say(
            f"worker {self.worker_id} ({socket.gethostname()} pid {os.getpid()}): "
            f"{self._concurrency} at once, stall timeout {stall:g} s; Ctrl-C stops"
        )
        beat = asyncio.create_task(self._heartbeat(app, stall))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop_asked, loop)
        try:
            while not await self._work(app, stall):
                await self._reconnect(app)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._store.remove(self.worker_id)
            await app.close_async()
            self._say(f"worker {self.worker_id} stopped")

    async def _work(self, app: Any, stall: float) -> bool:
        """Run procrastinate's worker: True when it stopped as asked (a signal), False
        when it stopped by itself (it lost the database, as in a server restart:
        :meth:`_reconnect`, then again). A query of its heartbeat or its listener that
        fails stops it without an error; that is a loss too, never a reason to exit."""
        if self._stopping:  # a signal while it reconnected
            return True
        self._running = asyncio.ensure_future(app.run_worker_async(
            concurrency=self._concurrency, name=f"recon-{os.getpid()}",
            additional_context={}, install_signal_handlers=False,
            update_heartbeat_interval=HEARTBEAT_S, stalled_worker_timeout=stall,
            shutdown_graceful_timeout=self._grace_s, abort_job_polling_interval=0.5,
            fetch_job_polling_interval=1.0,
        ))  # fmt: skip
        lost: object = "a query of its heartbeat or listener failed"
        try:
            await self._running
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except ConnectorException as exc:
            lost = exc.__cause__
        finally:
            self._running = None
        if self._stopping:
            return True
        self._say(f"worker {self.worker_id}: the database was lost ({lost}); reconnecting")
        return False

    def _stop_asked(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGINT or SIGTERM: procrastinate's worker stops gracefully (running items get
        ``grace_s``); a second signal is left to its default (stops at once)."""
        self._stopping = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if self._running is not None:
            self._running.cancel()  # procrastinate's way: a cancel is a graceful stop

    async def _reconnect(self, app: Any) -> None:
        """Open the app's connections again once the database answers (waits double up
        to :data:`_RECONNECT_MAX_S`); the items the lost worker ran are queued again by
        the stalled-job check."""
        for tries in itertools.count():
            await asyncio.sleep(min(_RECONNECT_MAX_S, 0.25 * 2**tries))
            if self._stopping:
                return
            with contextlib.suppress(Exception):
                await app.close_async()
            try:
                await app.open_async()
                await app.job_manager.list_queues_async()  # the database answers
            except Exception:  # noqa: BLE001 - still down: try again
                continue
            self._say(f"worker {self.worker_id}: reconnected")
            return

    def _ticker(self, tick: Callable[[], str]) -> Callable[[JobContext, int], None]:
        def ticked(context: JobContext, timestamp: int) -> None:
            self._say(f"watcher tick of {timestamp}: {tick()}")

        return ticked

    def _task(self, context: JobContext, batch_id: int, item_id: int, spec: Spec) -> Any:
        job = context.job
        with self._tasks_lock:
            self._in_task.add(job.id or 0)
            self._procrastinate_id = job.worker_id
        try:
            return self.items.run(context, batch_id, item_id, spec)
        except StorageError as exc:
            if not exc.transient:
                raise
            # The database went away under the item (a server restart): run it again
            # once it is back; what it committed stays, so it goes on from there.
            raise RetryItem(_RECONNECT_MAX_S, f"database out of reach: {exc}") from exc
        finally:
            with self._tasks_lock:
                self._in_task.discard(job.id or 0)

    async def _queue_lost_ends(self, app: Any) -> None:
        """Queue again the jobs that procrastinate's worker of this process holds as
        running but no task of it runs, seen so on two beats in a row: procrastinate
        could not write how they ended (the server went away in the middle of that
        write) and, this worker's heartbeat being fresh, no stalled-job check takes
        them. They run again (a finished item ends at once); left alone, a job still
        running holds up every item that waits for a slot behind it."""
        worker_id = self._procrastinate_id
        if worker_id is None:
            return
        doing = await app.job_manager.list_jobs_async(task=TASK, status="doing",
                                                      worker_id=worker_id)  # fmt: skip
        with self._tasks_lock:
            unended = {job.id: job for job in doing if job.id not in self._in_task}
        for job_id in unended.keys() & self._unended:
            self._say(f"job {job_id}: how it ended was not written; queued again")
            await app.job_manager.retry_job(unended[job_id])
        self._unended = set(unended)

    def _beat(self) -> None:
        """Write the heartbeat and running items now (also when an item starts or ends)."""
        assert self.worker_id is not None
        running, done = self.items.snapshot()
        self._store.beat(self.worker_id, self._clock.now(), running, done)

    async def _heartbeat(self, app: Any, stall_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await asyncio.to_thread(self._beat)
                for job in await app.job_manager.get_stalled_jobs(
                    task_name=TASK, seconds_since_heartbeat=stall_s
                ):
                    self._say(
                        f"job {job.id} ({job.task_kwargs}): its worker was lost; queued again"
                    )
                    await app.job_manager.retry_job(job)
                await self._queue_lost_ends(app)
            except (StorageError, ConnectorException, ProcrastinateAppClosed):
                pass  # the database is out of reach: the next beat tries again
            await asyncio.sleep(max(0.0, HEARTBEAT_S - (loop.time() - started)))  # a fixed rate


__all__ = ["HEARTBEAT_S", "ItemWorker", "Watch", "WorkerProcess"]
