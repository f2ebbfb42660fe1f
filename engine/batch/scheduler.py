"""The batch runner's state machine: which item runs next, and what happens to it.

Pure bookkeeping, no threads: the runner calls it with its lock held, tests call
it directly with a fake clock. It decides

- the order: higher priority first, ties in submission order (across batches too);
- concurrency: at most ``max_concurrent_jobs`` items of a batch hold a worker;
- the retry schedule (:func:`~engine.batch.policy.next_retry`, with backoff and jitter);
- throttling: a batch whose memory gate is closed starts nothing, and its wait is summed;
- timeouts: an attempt past its deadline has its token cancelled;
- what is due for writing: finished items in groups of ``batch_size``, the rest at the end.

An item moves ``queued -> running [-> retrying -> running ...] -> a finished state``;
an interrupted one goes back to ``queued``.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.batch.events import event
from engine.batch.memory import MemoryGate
from engine.batch.policy import next_retry, retry_delay
from engine.batch.records import BatchProgress, Spec, history_json
from engine.cancel import CancelToken
from engine.clock import Clock
from engine.domain.models import ItemState
from engine.settings import BatchSettings
from engine.store.batches import ItemRow

log = logging.getLogger(__name__)

# Item states as exact strings: they key every counter update and are written into
# every row, and an exact str takes the fast path of dict lookups and of sqlite3.
QUEUED, RUNNING, RETRYING = (s.value for s in (ItemState.QUEUED, ItemState.RUNNING,
                                                ItemState.RETRYING))  # fmt: skip
SUCCEEDED, FAILED, SKIPPED, CANCELLED = (s.value for s in (ItemState.SUCCEEDED, ItemState.FAILED,
                                                           ItemState.SKIPPED,
                                                           ItemState.CANCELLED))  # fmt: skip
STATES = tuple(s.value for s in ItemState)
_FINISHED = frozenset(s.value for s in ItemState if s.finished)

RATE_WINDOW = 50  # throughput is smoothed over the last this many finished items
WRITE_WITHIN_S = 1.0
"""A finished item's row is written within this long even before ``batchSize`` rows wait,
so that other processes (a dashboard, ``recon batch list``) see a slow batch move."""


class Item:
    """One item of a batch as the runner tracks it."""

    __slots__ = ("batch", "item_id", "spec", "priority", "seq", "status", "attempt", "token",
                 "deadline", "timed_out", "stop", "history", "progressed")  # fmt: skip

    def __init__(
        self, batch: Batch, item_id: int, spec: Spec, priority: int, seq: int, history: list[str]
    ) -> None:
        self.batch = batch
        self.item_id = item_id
        self.spec = spec
        self.priority = priority
        self.seq = seq
        self.status = QUEUED
        self.attempt = len(history)
        self.token: CancelToken | None = None
        self.deadline = 0.0
        self.timed_out = False
        self.stop: str | None = None  # CANCELLED or INTERRUPTED once told to stop
        self.history = history  # every attempt, each a JSON object (see records.attempt_json)
        self.progressed = False  # the last attempt made progress


class Batch:
    """A batch's items and counters, its pending rows and its throttle periods."""

    def __init__(self, batch_id: int, name: str, settings: BatchSettings, started: float) -> None:
        self.id = batch_id
        self.name = name
        self.settings = settings
        # Items by (-priority, seq), fixed at submit; those no longer queued are skipped.
        self.queue: deque[Item] = deque()
        self.live: dict[int, Item] = {}  # items not finished
        self.counts = dict.fromkeys(STATES, 0)
        self.total = 0
        self.active = 0  # items holding a worker (running or waiting to retry)
        self.cancelled = False
        self.flush_requested = False
        self.finalizing = False  # its last write is under way
        self.finished = False
        self.pending: list[ItemRow] = []  # rows of finished (or interrupted) items
        self.collected_at = started  # monotonic: when its rows were last taken for a write
        self.writing: list[ItemRow] = []  # rows taken for a write not committed yet
        self.throttle_since: float | None = None
        self.throttled_s = 0.0
        self.started = started
        self.ended: float | None = None
        self.done_times: deque[float] = deque([started], maxlen=RATE_WINDOW + 1)

    def head(self) -> Item | None:
        queue = self.queue
        while queue and queue[0].status != QUEUED:
            queue.popleft()
        return queue[0] if queue else None

    def move(self, item: Item, status: str) -> None:
        self.counts[item.status] -= 1
        self.counts[status] += 1
        item.status = status

    def throttled(self, now: float) -> float:
        since = self.throttle_since
        return self.throttled_s + (now - since if since is not None else 0.0)

    def progress(self, now: float) -> BatchProgress:
        c = self.counts
        end = self.ended if self.ended is not None else now
        span = end - self.done_times[0]
        rate = (len(self.done_times) - 1) / span if span > 0 else 0.0
        remaining = c[QUEUED] + c[RUNNING] + c[RETRYING]
        eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        return BatchProgress(
            batch_id=self.id, total=self.total, queued=c[QUEUED], running=c[RUNNING],
            retrying=c[RETRYING], succeeded=c[SUCCEEDED], failed=c[FAILED],
            skipped=c[SKIPPED], cancelled=c[CANCELLED], throughput=rate, eta_s=eta,
            elapsed_s=end - self.started, throttled_s=self.throttled(now), done=self.finished,
            percent=100.0 * (self.total - remaining) / self.total if self.total else 100.0,
        )  # fmt: skip


@dataclass
class Flush:
    """Rows of a batch taken for one write; ``final`` ends the batch."""

    batch: Batch
    items: list[ItemRow]
    final: bool


class Scheduler:
    """Queues, counters and decisions of every batch of a runner. Not thread-safe:
    the runner holds its lock around every call.

    Args:
        limit: items of every batch together that may hold a worker at once.
        clock: monotonic time for deadlines, throughput and throttling; wall time for rows.
        gate: the memory reading that throttles batches.
        rng: source of retry jitter.
    """

    def __init__(self, *, limit: int, clock: Clock, gate: MemoryGate, rng: random.Random) -> None:
        self.limit = limit  # the runner may change it (reconfigure), under its lock
        self._active = 0  # items holding a worker, over every batch
        self._clock = clock
        self._gate = gate
        self._rng = rng
        self.batches: dict[int, Batch] = {}
        self.open: dict[int, Batch] = {}  # batches not finished
        self._running: set[Item] = set()  # items inside an attempt, watched for timeouts
        self._seq = itertools.count()
        self.throttling = False  # some batch is throttled: read memory at every tick
        self._halted = False  # closing, or the database failed: nothing more starts
        self.closing = False  # the runner is closing: its threads end

    # --- batches --------------------------------------------------------------------------

    def add(
        self,
        batch_id: int,
        name: str,
        settings: BatchSettings,
        counts: Mapping[str, int],
        items: Iterable[tuple[int, Spec, int, list[str]]],
    ) -> None:
        """Register a batch and queue its unfinished ``(item_id, spec, priority, history)``."""
        now = self._clock.monotonic()
        batch = Batch(batch_id, name, settings, now)
        batch.counts.update(counts)
        for item_id, spec, priority, history in items:
            batch.live[item_id] = Item(batch, item_id, spec, priority, next(self._seq), history)
        # A stable sort: ties stay in submission (seq) order.
        batch.queue.extend(sorted(batch.live.values(), key=lambda item: -item.priority))
        batch.counts[QUEUED] = len(batch.live)
        batch.total = sum(batch.counts.values())
        self.batches[batch_id] = batch
        self.open[batch_id] = batch
        self._update_throttle(batch, now)
        self.throttling |= batch.throttle_since is not None

    def halt(self, *, closing: bool = False) -> None:
        """Start nothing more; ``closing``: the runner's threads end too."""
        self._halted = True
        self.closing |= closing

    # --- one item's way ---------------------------------------------------------------------

    def pick(self, token: CancelToken) -> Item | None:
        """The best queued item that may start now, armed for its first attempt."""
        best: Item | None = None
        for batch in self.open.values():
            if (
                batch.active >= batch.settings.max_concurrent_jobs
                or batch.throttle_since is not None
            ):
                continue
            head = batch.head()
            if head is not None and (
                best is None or (-head.priority, head.seq) < (-best.priority, best.seq)
            ):
                best = head
        if best is None or self._halted or self._active >= self.limit:
            return None
        best.batch.queue.popleft()
        best.batch.active += 1
        self._active += 1
        best.batch.move(best, RUNNING)
        self._arm(best, token)
        return best

    def _arm(self, item: Item, token: CancelToken) -> None:
        """Give the item's next attempt its token and deadline; the first attempt's
        deadline counts from when the item is picked."""
        item.token = token
        item.timed_out = False
        item.deadline = self._clock.monotonic() + item.batch.settings.timeout_ms / 1000
        self._running.add(item)

    def retry_after(self, item: Item, outcome: str, retries: int) -> tuple[int, float] | None:
        """``(retry number, seconds to wait)`` after an attempt, or None if it is final."""
        settings = item.batch.settings
        retry = next_retry(
            outcome, progressed=item.progressed, retries=retries, budget=settings.retry_attempts
        )
        if retry is None:
            return None
        return retry, retry_delay(retry, settings.retry_delay_ms / 1000, self._rng)

    def hold(self, item: Item) -> bool:
        """The item waits to retry; False if it was told to stop."""
        self._running.discard(item)
        item.token = None
        if item.stop is not None:
            return False
        item.batch.move(item, RETRYING)
        return True

    def rearm(self, item: Item, token: CancelToken) -> bool:
        """The item's retry starts now; False if it was told to stop."""
        if item.stop is not None:
            return False
        self._arm(item, token)
        item.batch.move(item, RUNNING)
        return True

    def conclude(self, item: Item, row: ItemRow) -> bool:
        """Count a worker's finished or interrupted (``queued``) item; True when a write is due."""
        self._running.discard(item)
        item.token = None
        batch = item.batch
        if row["status"] == QUEUED:  # interrupted by close(): resume runs it again
            batch.active -= 1
            self._active -= 1
            batch.move(item, QUEUED)
            batch.pending.append(row)
            return False
        return self._record(item, row)

    def _record(self, item: Item, row: ItemRow) -> bool:
        batch = item.batch
        if item.status != QUEUED:
            batch.active -= 1
            self._active -= 1
        batch.move(item, row["status"])
        del batch.live[item.item_id]
        batch.pending.append(row)
        batch.done_times.append(self._clock.monotonic())
        return len(batch.pending) >= batch.settings.batch_size or not batch.live

    def row(self, item: Item, status: str, result: Any, error: str | None) -> ItemRow:
        """The item's columns as they are to be written."""
        return {
            "batch_id": item.batch.id,
            "item_id": item.item_id,
            "status": status,
            "attempts": item.attempt,
            "history": history_json(item.history),
            "error": error,
            "finished_at": self._clock.now() if status in _FINISHED else None,
            "result": None if result is None else json.dumps(result, default=str),
        }

    # --- stopping -----------------------------------------------------------------------------

    def stop(self, item: Item, reason: str) -> None:
        """Tell a running or retrying item to stop (CANCELLED or INTERRUPTED)."""
        if item.status in (RUNNING, RETRYING):
            item.stop = reason
            if item.token is not None:
                item.token.cancel(reason)

    def stop_all(self, reason: str) -> None:
        for batch in self.open.values():
            for item in batch.live.values():
                self.stop(item, reason)

    def drop(self, items: list[Item]) -> list[dict[str, Any]]:
        """Cancel queued items at once; return their events."""
        for item in items:
            item.batch.flush_requested = True
            self._record(item, self.row(item, CANCELLED, None, "cancelled"))
        return [
            event(CANCELLED, i.batch.id, i.item_id, i.spec, i.attempt, "cancelled") for i in items
        ]

    def cancel(self, batch: Batch) -> list[dict[str, Any]]:
        """Cancel a batch: drop its queued items, stop the others; return the events."""
        batch.cancelled = True
        events = self.drop([item for item in batch.live.values() if item.status == QUEUED])
        for item in batch.live.values():
            self.stop(item, CANCELLED)
        batch.queue.clear()
        return events

    # --- the dispatcher's tick ----------------------------------------------------------------

    def watch(self) -> bool:
        """Throttle or release batches and stop attempts past their deadline; True when
        a batch was released (workers may start its items)."""
        now = self._clock.monotonic()
        released = any([self._update_throttle(batch, now) for batch in self.open.values()])
        self.throttling = any(b.throttle_since is not None for b in self.open.values())
        for item in self._running:
            if not item.timed_out and now >= item.deadline and item.token is not None:
                item.timed_out = True
                item.token.cancel(
                    f"timed out after {item.batch.settings.timeout_ms} ms", timeout=True
                )
        return released

    def _update_throttle(self, batch: Batch, now: float) -> bool:
        """Start or end the batch's throttle period; True when it ends."""
        waiting = self._gate.over(batch.settings) and batch.counts[QUEUED] > 0
        if waiting and batch.throttle_since is None:
            batch.throttle_since = now
            log.info("batch %s throttled: memory %.0f MB > %s MB", batch.id, self._gate.mb,
                     batch.settings.memory_threshold_mb)  # fmt: skip
        elif not waiting and batch.throttle_since is not None:
            log.info("batch %s released after %.1f s", batch.id, now - batch.throttle_since)
            batch.throttled_s += now - batch.throttle_since
            batch.throttle_since = None
            return True
        return False

    def collect(self, *, everything: bool = False) -> list[Flush]:
        """Take the rows due for writing; a batch whose items all finished ends."""
        work = []
        now = self._clock.monotonic()
        for batch in self.open.values():
            final = not batch.live and not batch.finalizing
            due = batch.flush_requested or len(batch.pending) >= batch.settings.batch_size
            due = due or bool(batch.pending) and now - batch.collected_at >= WRITE_WITHIN_S
            if final or everything or due:
                batch.collected_at = now
                if final:
                    batch.finalizing = True
                    batch.throttle_since, batch.throttled_s = None, batch.throttled(now)
                    batch.ended = batch.ended if batch.ended is not None else now
                work.append(Flush(batch, batch.pending, final))
                batch.writing = batch.writing + batch.pending
                batch.pending, batch.flush_requested = [], False
        return [f for f in work if f.items or f.final]

    def written(self, work: list[Flush], *, ok: bool) -> list[Batch]:
        """After a write: return the batches it ended, or put the rows back if it failed."""
        for flush in work:
            if not ok:
                flush.batch.pending[:0] = flush.items
                flush.batch.finalizing &= not flush.final
            flush.batch.writing = []
        if not ok:
            return []
        ended = [f.batch for f in work if f.final]
        for batch in ended:
            batch.finished = True
            self.open.pop(batch.id, None)
        return ended

    # --- reading ------------------------------------------------------------------------------

    def progress(self, batch_id: int) -> BatchProgress | None:
        batch = self.batches.get(batch_id)
        return None if batch is None else batch.progress(self._clock.monotonic())

    def queue_depth(self) -> int:
        """Items waiting to start, over every batch."""
        return sum(b.counts[QUEUED] for b in self.open.values())

    def running_count(self) -> int:
        """Items inside an attempt or waiting to retry, over every batch."""
        return sum(b.active for b in self.open.values())

    def live_rows(self, batch_id: int) -> dict[int, ItemRow]:
        """Rows of the batch's items that this process knows and has not written yet."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return {}
        live = {row["item_id"]: row for row in (*batch.writing, *batch.pending)}
        for item in batch.live.values():
            live[item.item_id] = self.row(item, item.status, None, None)
        return live

    def live_counts(self, batch_id: int) -> tuple[dict[str, int], float] | None:
        """Counts by state and throttled seconds of a batch of this process."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        counts = {s: n for s, n in batch.counts.items() if n}
        return counts, batch.throttled(self._clock.monotonic())


__all__ = ["Batch", "Flush", "Item", "Scheduler"]
