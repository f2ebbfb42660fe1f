"""The scheduler state machine, driven directly: no threads, a fake clock."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.batch.memory import MemoryGate
from engine.batch.scheduler import WRITE_WITHIN_S, Item, Scheduler
from engine.cancel import CancelToken
from engine.clock import FakeClock
from engine.errors import ItemCancelled, ItemTimeout
from engine.settings import BatchSettings


class Memory:
    """A memory reading the test sets."""

    def __init__(self) -> None:
        self.mb = 0.0

    def __call__(self) -> float:
        return self.mb


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory() -> Memory:
    return Memory()


def scheduler(clock: FakeClock, memory: Memory, *, limit: int = 5, seed: int = 1) -> Scheduler:
    gate = MemoryGate(memory, clock=clock, poll_s=0.05)
    return Scheduler(limit=limit, clock=clock, gate=gate, rng=random.Random(seed))


def settings(**values: Any) -> BatchSettings:
    return BatchSettings(**{"enable_resource_throttling": False, **values})


def add(s: Scheduler, batch_id: int, priorities: list[int], **values: Any) -> None:
    items = [(n, {"n": n}, p, []) for n, p in enumerate(priorities, 1)]
    s.add(batch_id, f"b{batch_id}", settings(**values), {}, items)


def finish(s: Scheduler, item: Item, status: str = "succeeded") -> bool:
    return s.conclude(item, s.row(item, status, None, None))


def drain(s: Scheduler) -> list[tuple[int, int]]:
    """Run everything one at a time; the (batch, item) order."""
    order = []
    while (item := s.pick(CancelToken())) is not None:
        order.append((item.batch.id, item.item_id))
        finish(s, item)
    return order


def test_higher_priority_first_ties_in_submission_order_across_batches(
    clock: FakeClock, memory: Memory
) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [1, 5, 3, 5, 0, 3])
    add(s, 2, [5, 0])
    assert drain(s) == [(1, 2), (1, 4), (2, 1), (1, 3), (1, 6), (1, 1), (1, 5), (2, 2)]


def test_the_global_and_the_batch_limits(clock: FakeClock, memory: Memory) -> None:
    s = scheduler(clock, memory, limit=3)
    add(s, 1, [0] * 4, max_concurrent_jobs=2)
    add(s, 2, [0] * 4)
    picked = [s.pick(CancelToken()) for _ in range(4)]
    assert [(i.batch.id, i.item_id) for i in picked if i] == [(1, 1), (1, 2), (2, 1)]
    assert picked[3] is None and s.running_count() == 3 and s.queue_depth() == 5
    assert picked[0] is not None
    finish(s, picked[0])
    item = s.pick(CancelToken())
    assert item is not None and (item.batch.id, item.item_id) == (1, 3)


def test_retry_schedule_is_exponential_with_full_jitter_and_a_budget(
    clock: FakeClock, memory: Memory
) -> None:
    s = scheduler(clock, memory, seed=7)
    add(s, 1, [0], retry_attempts=3, retry_delay_ms=10_000)
    item = s.pick(CancelToken())
    assert item is not None
    expected = random.Random(7)
    retries = 0
    for ceiling in (10, 20, 40):
        after = s.retry_after(item, "transient", retries)
        assert after is not None
        retries, delay = after
        assert delay == expected.uniform(0, ceiling)
    assert s.retry_after(item, "timeout", retries) is None  # the budget is spent
    item.progressed = True  # an attempt that made progress starts the budget afresh
    assert s.retry_after(item, "timeout", retries) == (1, pytest.approx(expected.uniform(0, 10)))
    assert s.retry_after(item, "permanent", 0) is None


def test_a_retry_waits_in_retrying_and_a_stopped_item_does_not_retry(
    clock: FakeClock, memory: Memory
) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [0, 0])
    first, second = s.pick(CancelToken()), s.pick(CancelToken())
    assert first is not None and second is not None
    assert s.hold(first) and s.progress(1).retrying == 1  # type: ignore[union-attr]
    assert s.rearm(first, CancelToken()) and s.progress(1).running == 2  # type: ignore[union-attr]
    s.stop(second, "cancelled")
    assert not s.hold(second)


def test_no_item_starts_while_memory_is_high_and_the_wait_is_summed(
    clock: FakeClock, memory: Memory
) -> None:
    memory.mb = 2000.0
    gate = MemoryGate(memory, clock=clock, poll_s=0.05)
    s = Scheduler(limit=5, clock=clock, gate=gate, rng=random.Random(1))
    add(s, 1, [0, 0], enable_resource_throttling=True, memory_threshold_mb=1024)
    assert s.throttling and s.pick(CancelToken()) is None
    clock.advance(3)
    assert not s.watch()  # still high
    memory.mb = 100.0
    gate.refresh(throttling=s.throttling)
    clock.advance(1)
    assert s.watch()  # released
    assert s.progress(1).throttled_s == pytest.approx(4.0)  # type: ignore[union-attr]
    assert s.pick(CancelToken()) is not None


def test_an_attempt_past_its_deadline_has_its_token_cancelled(
    clock: FakeClock, memory: Memory
) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [0], timeout_ms=1_000)
    token = CancelToken()
    item = s.pick(token)
    clock.advance(0.5)
    s.watch()
    assert not token.cancelled
    clock.advance(0.6)
    s.watch()
    assert item is not None and item.timed_out
    with pytest.raises(ItemTimeout, match="timed out after 1000 ms"):
        token.check()


def test_rows_are_due_in_groups_and_the_batch_ends_with_its_last_write(
    clock: FakeClock, memory: Memory
) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [0] * 5, batch_size=2)
    due = []
    for _ in range(5):
        item = s.pick(CancelToken())
        assert item is not None
        due.append(finish(s, item))
        if len(due) < 5:
            work = s.collect()
            assert [len(f.items) for f in work] == ([2] if due[-1] else [])
            s.written(work, ok=True)
    assert due == [False, True, False, True, True]  # groups of two, then the last one
    (last,) = s.collect()
    assert last.final and len(last.items) == 1
    assert s.written([last], ok=False) == [] and s.open  # a failed write keeps the rows
    (again,) = s.collect()
    assert again.final and len(again.items) == 1
    assert [b.id for b in s.written([again], ok=True)] == [1]
    assert s.progress(1).done and not s.open  # type: ignore[union-attr]


def test_a_finished_row_is_written_within_a_second_before_its_group_fills(
    clock: FakeClock, memory: Memory
) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [0] * 5, batch_size=20)  # a slow batch: 20 rows would take long to gather
    item = s.pick(CancelToken())
    assert item is not None
    finish(s, item)
    assert s.collect() == [], "not due yet: rows are written in groups"
    clock.advance(WRITE_WITHIN_S)
    (work,) = s.collect()
    assert [row["item_id"] for row in work.items] == [item.item_id] and not work.final


def test_cancel_drops_queued_items_and_stops_running_ones(clock: FakeClock, memory: Memory) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [0, 0, 0], max_concurrent_jobs=1)
    token = CancelToken()
    running = s.pick(token)
    events = s.cancel(s.batches[1])
    assert [(e["type"], e["item_id"]) for e in events] == [("cancelled", 2), ("cancelled", 3)]
    assert running is not None and running.stop == "cancelled"
    with pytest.raises(ItemCancelled):
        token.check()
    p = s.progress(1)
    assert p is not None and (p.running, p.cancelled, p.queued) == (1, 2, 0)
    assert s.pick(CancelToken()) is None


def test_counters_add_up_and_eta_follows_the_fake_clock(clock: FakeClock, memory: Memory) -> None:
    s = scheduler(clock, memory)
    add(s, 1, [0] * 4, max_concurrent_jobs=1)
    for k in range(4):
        item = s.pick(CancelToken())
        assert item is not None
        clock.advance(2.0)
        finish(s, item, "failed" if k == 0 else "succeeded")
        p = s.progress(1)
        assert p is not None
        assert p.queued + p.running + p.succeeded + p.failed == p.total == 4
        assert p.throughput == pytest.approx(0.5) and p.eta_s == pytest.approx(2.0 * (3 - k))
