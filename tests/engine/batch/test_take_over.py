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
from engine.store.batches import SqlBatchStore
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
    return BatchRunner(
        settings, store=SqlBatchStore(storage), execute=noop, clock=FakeClock(), **kwargs
    )


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
