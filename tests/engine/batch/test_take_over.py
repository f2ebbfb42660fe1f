"""Batches a stopped process left: taken over (``interrupted``) or resumed, each item
with the state its work reached, on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.app.console import open_storage
from engine.batch.runner import BatchRunner
from engine.cancel import CancelToken
from engine.clock import FakeClock
from engine.domain.models import BatchStatus, ItemState
from engine.settings import BatchSettings, StorageSettings
from engine.store.batches import BatchOwner, SqlBatchStore
from engine.store.leases import Holder, SqlLeases
from engine.store.storage import Storage

# How each item's work ended elsewhere: n=1 succeeded, n=2 failed, the others not yet.
ENDED = {1: ItemState.SUCCEEDED, 2: ItemState.FAILED}


def noop(spec: Mapping[str, Any], token: CancelToken) -> Any:
    return spec["n"]


def outcome(spec: Mapping[str, Any]) -> ItemState | None:
    return ENDED.get(spec["n"])


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    s = open_storage(StorageSettings(db_url=db_url))
    yield s
    s.close()


def runner(storage: Storage, **kwargs: Any) -> BatchRunner:
    settings = BatchSettings(enable_resource_throttling=False)
    kwargs.setdefault("clock", FakeClock())
    return BatchRunner(settings, store=SqlBatchStore(storage), execute=noop, **kwargs)


def left_running(storage: Storage, name: str) -> int:
    """A batch of three items whose process stopped before running any."""
    gone = runner(storage)
    batch_id = gone.submit([{"n": n} for n in (1, 2, 3)], name=name).batch_id
    gone.close()  # its items stay unfinished: a process killed now leaves the same
    return batch_id


def test_take_over_ends_the_stopped_batch_with_its_items_real_states(storage: Storage) -> None:
    old = left_running(storage, "month-end 2025-03")
    other = left_running(storage, "month-end 2025-04")
    later = runner(storage, outcome=outcome)
    new = later.submit([{"n": 3}], name="month-end 2025-03").batch_id

    assert later.take_over("month-end 2025-03", by=new) == [old]
    info = {b.batch_id: b for b in later.list_batches()}
    assert info[old].status is BatchStatus.INTERRUPTED and info[old].finished_at is not None
    assert info[old].counts == {"succeeded": 1, "failed": 1, "cancelled": 1}
    assert info[other].status is BatchStatus.RUNNING  # another month: not taken over
    assert info[new].status is BatchStatus.RUNNING  # this process's own batch: untouched
    items = {i.item_id: i for i in later.batch_detail(old).items}
    assert items[2].error == "failed before its process stopped"
    assert items[3].error == f"interrupted: its process stopped; batch {new} took over"
    assert later.take_over("month-end 2025-03", by=new) == []  # once
    later.run(until_idle=True)
    assert later.progress(new).succeeded == 1
    later.close()


def test_resume_records_items_whose_work_ended_and_runs_the_rest(storage: Storage) -> None:
    old = left_running(storage, "demo")
    ran: list[int] = []
    later = BatchRunner(
        BatchSettings(enable_resource_throttling=False), store=SqlBatchStore(storage),
        execute=lambda spec, token: ran.append(spec["n"]), outcome=outcome, clock=FakeClock(),
    )  # fmt: skip
    assert later.resume() == [old]
    later.run(until_idle=True)
    assert ran == [3]
    [info] = later.list_batches()
    assert info.status is BatchStatus.FINISHED
    assert info.counts == {"succeeded": 2, "failed": 1}
    later.close()


def test_a_batch_whose_owner_lease_expired_is_ended_by_any_reader_and_resumable(
    storage: Storage,
) -> None:
    clock = FakeClock()
    leases = SqlLeases(storage, clock=clock)
    dead, alive = Holder("host:1:dead", "host", 1), Holder("host:2:alive", "host", 2)
    leases.acquire("month:2025-03", dead, 30)
    leases.acquire("month:2025-04", alive, 3600)

    def left(name: str, owner: BatchOwner | None) -> int:
        gone = runner(storage, clock=clock)
        batch_id = gone.submit([{"n": n} for n in (1, 2, 3)], name=name, owner=owner).batch_id
        gone.close()
        return batch_id

    abandoned = left("month-end 2025-03", BatchOwner("month:2025-03", dead.id))
    held = left("month-end 2025-04", BatchOwner("month:2025-04", alive.id))
    ownerless = left("workers", None)  # as a procrastinate batch: workers run it on
    ran: list[int] = []
    later = BatchRunner(
        BatchSettings(enable_resource_throttling=False), store=SqlBatchStore(storage),
        execute=lambda spec, token: ran.append(spec["n"]), outcome=outcome, clock=clock,
    )  # fmt: skip
    assert {b.status for b in later.list_batches()} == {BatchStatus.RUNNING}  # leases live

    clock.advance(31)  # the dead holder's lease expires; the live one's is still held
    status = {b.batch_id: b for b in later.list_batches()}
    assert status[abandoned].status is BatchStatus.INTERRUPTED
    assert status[abandoned].finished_at is not None
    # the items whose jobs ended show how; the one whose job did not stays queued
    assert status[abandoned].counts == {"succeeded": 1, "failed": 1, "queued": 1}
    assert status[held].status is BatchStatus.RUNNING
    assert status[ownerless].status is BatchStatus.RUNNING
    # a detail read sees it too, and a second read changes nothing
    assert later.batch_detail(abandoned).info == status[abandoned]

    # `recon batch resume` still finishes it: its queued item runs
    assert abandoned in later.resume()
    later.run(until_idle=True)
    final = {b.batch_id: b for b in later.list_batches()}
    assert final[abandoned].status is BatchStatus.FINISHED and 3 in ran
    assert final[abandoned].counts == {"succeeded": 2, "failed": 1}
    later.close()


def test_a_later_run_takes_over_the_queued_items_of_an_abandoned_batch(storage: Storage) -> None:
    clock = FakeClock()
    dead = Holder("host:1:dead", "host", 1)
    SqlLeases(storage, clock=clock).acquire("month:2025-03", dead, 30)
    gone = runner(storage, clock=clock)
    owner = BatchOwner("month:2025-03", dead.id)
    old = gone.submit([{"n": n} for n in (1, 2, 3)], name="month-end 2025-03", owner=owner)
    gone.close()
    later = runner(storage, clock=clock, outcome=outcome)
    clock.advance(31)
    [info] = later.list_batches()  # ended as abandoned: item 3 stays queued
    assert info.status is BatchStatus.INTERRUPTED and info.counts["queued"] == 1

    new = later.submit([{"n": 3}], name="month-end 2025-03").batch_id
    assert later.take_over("month-end 2025-03", by=new) == [old.batch_id]
    info = {b.batch_id: b for b in later.list_batches()}[old.batch_id]
    assert info.status is BatchStatus.INTERRUPTED
    assert info.counts == {"succeeded": 1, "failed": 1, "cancelled": 1}
    items = {i.item_id: i for i in later.batch_detail(old.batch_id).items}
    assert items[3].error == f"interrupted: its process stopped; batch {new} took over"
    assert later.take_over("month-end 2025-03", by=new) == []  # once
    assert later.resume() == []  # nothing of it is left to run
    later.close()
