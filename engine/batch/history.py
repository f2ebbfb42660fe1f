"""Batches as stored, overlaid with what this process knows and has not written yet.

Reads for ``recon batch list/show``, the dashboard and the API, and the
operations on stored batches: cancelling one nobody runs, loading the unfinished
ones for a resume, and ending those a stopped process left.

A batch its process abandoned (killed: its month lease expired, see
:mod:`engine.store.batches`) is ended as ``interrupted`` by the next read of any
process, each item showing the state its job reached; its other items stay
queued, for ``recon batch resume`` or a later run of the month to take over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from engine.batch.events import Event, event
from engine.batch.records import (
    BatchDetail,
    BatchInfo,
    Spec,
    batch_info,
    counts_of,
    is_finished,
    item_record,
    item_rows,
)
from engine.domain.models import ItemState
from engine.store.batches import BatchStore, ItemRow, StoredBatch

CANCEL_POLL_S = 1.0
"""How often a runner reads whether another process cancelled one of its batches."""

Unfinished = tuple[int, Spec, int, list[str]]
"""An item to queue again: its id, spec, priority and attempts so far (JSON objects)."""

Outcome = Callable[[Spec], ItemState | None]
"""How an item's work ended outside the runner (say its job finished just before its
process was killed), or None if it has not."""


class LiveBatches(Protocol):
    """What the running process knows of its own batches."""

    def live_rows(self, batch_id: int) -> dict[int, ItemRow]:
        """Rows of the batch's items not written yet (none for other batches)."""
        ...

    def live_counts(self, batch_id: int) -> tuple[dict[str, int], float] | None:
        """Counts by state and throttled seconds; None for other batches."""
        ...

    def known(self) -> set[int]:
        """The ids of the batches this process runs or ran."""
        ...

    def uncancelled(self) -> set[int]:
        """The ids of the batches this process runs and has not cancelled."""
        ...


class History:
    """Reads and cancels stored batches, and settles those a stopped process left.
    Thread-safe if ``live`` is. ``outcome`` tells how an item's work ended elsewhere."""

    def __init__(
        self, store: BatchStore, live: LiveBatches, outcome: Outcome | None = None
    ) -> None:
        self._store = store
        self._live = live
        self._outcome = outcome
        self._next_poll = 0.0  # monotonic seconds: when cancelled_elsewhere reads again

    def list_batches(self, limit: int, *, now: datetime) -> list[BatchInfo]:
        """The latest batches, newest first (live counters for this process's batches);
        abandoned ones are ended first."""
        self.end_abandoned(now=now)
        return [self._info(b, counts_of(b.total, c)) for b, c in self._store.latest(limit)]

    def batch_detail(self, batch_id: int, *, now: datetime) -> BatchDetail:
        """A batch with every item and its attempts (what is not written yet included);
        abandoned batches are ended first."""
        self.end_abandoned(now=now)
        live = self._live.live_rows(batch_id)  # first: a row written meanwhile is then read too
        stored, rows = self._store.batch(batch_id)
        records = [item_record(*found) for found in item_rows(stored, rows, live)]
        counts: dict[str, int] = {}
        for item in records:
            counts[item.status.value] = counts.get(item.status.value, 0) + 1
        return BatchDetail(self._info(stored, counts), tuple(records))

    def cancelled_elsewhere(self) -> set[int]:
        """The batches this process runs that another process cancelled in the database
        (``recon batch cancel``, the API, another dashboard), read at most every
        :data:`CANCEL_POLL_S`: the runner cancels them here too (the dispatcher calls it)."""
        now = time.monotonic()
        running = self._live.uncancelled() if now >= self._next_poll else set()
        if not running:
            return set()
        self._next_poll = now + CANCEL_POLL_S
        return self._store.cancelled_among(running)

    def cancel(self, batch_id: int, now: datetime) -> list[Event]:
        """Cancel a stored batch of no runner here. Another process that runs it is asked
        to (it stops its items and records them); one nobody runs is cancelled here with
        its unfinished items. Returns the events of the items cancelled here."""
        if self._store.ask_owner_to_cancel(batch_id, now):
            return []
        specs: dict[int, Spec] = {}

        def cancelled(stored: StoredBatch, rows: Mapping[int, ItemRow]) -> list[ItemRow]:
            found = [(r, s) for r, s, _ in item_rows(stored, rows, {}) if not is_finished(r)]
            specs.update((r["item_id"], spec) for r, spec in found)
            return [_ended_row(r, ItemState.CANCELLED, now, "cancelled") for r, _ in found]

        done = self._store.cancel(batch_id, now, cancelled)
        kind = ItemState.CANCELLED.value
        return [
            event(kind, batch_id, n, specs[n], error="cancelled")
            for n in (row["item_id"] for row in done)
        ]

    def unfinished(
        self, *, now: datetime, reopen: bool = False
    ) -> list[tuple[StoredBatch, dict[str, int], list[Unfinished]]]:
        """The stored running batches of no process here (and the interrupted ones with
        unfinished items), with finished counts and unfinished items. Items whose work
        ended meanwhile (``outcome``) are recorded as such first. ``reopen`` (for a
        resume): each is running again with no owner, so no reader ends it meanwhile."""
        found = []
        for stored, rows in self._store.unfinished(self._live.known()):
            if reopen:  # before it runs: its end, once written, must stay
                self._store.reopen(stored.id)
            ended = settled(stored, rows, now, self._outcome)
            if ended:
                self._store.save(ended, [])
                rows = rows | {row["item_id"]: row for row in ended}
            found.append((stored, *_unfinished(stored, rows)))
        return found

    def end_abandoned(self, *, now: datetime) -> list[int]:
        """End as ``interrupted`` the running batches of no process here whose owner's
        lease has expired by ``now``: each unfinished item gets the state its work
        reached (``outcome``), the others stay queued. Return their ids."""

        def rows(stored: StoredBatch, found: Mapping[int, ItemRow]) -> list[ItemRow]:
            return settled(stored, found, now, self._outcome)

        return self._store.interrupt_abandoned(self._live.known(), now, rows)

    def take_over(self, name: str, *, by: int, now: datetime) -> list[int]:
        """End the stored running batches named ``name`` that no process here runs (and
        the interrupted ones with unfinished items) as ``interrupted``: batch ``by``
        took over their unfinished items. Each such item gets
        the state its work reached (``outcome``), else is cancelled with a note naming
        ``by``. Return their ids."""
        ids = []
        for stored, _ in self._store.unfinished(self._live.known() | {by}):
            if stored.name == name:

                def rows(s: StoredBatch, r: Mapping[int, ItemRow]) -> list[ItemRow]:
                    return settled(s, r, now, self._outcome, taken_over_by=by)

                self._store.interrupt(stored.id, now, rows)
                ids.append(stored.id)
        return ids

    def _info(self, stored: StoredBatch, counts: Mapping[str, int]) -> BatchInfo:
        live = self._live.live_counts(stored.id)
        if live is None:
            return batch_info(stored, counts)
        return batch_info(stored, live[0], live[1])


def settled(
    stored: StoredBatch,
    rows: Mapping[int, ItemRow],
    now: datetime,
    outcome: Outcome | None,
    *,
    taken_over_by: int | None = None,
) -> list[ItemRow]:
    """Rows for the unfinished items of a batch whose process stopped: the state their
    work reached (``outcome``), else, if batch ``taken_over_by`` took them over, cancelled
    with a note naming it. Items neither applies to are left out."""
    ended = []
    for row, spec, _ in item_rows(stored, rows, {}):
        if is_finished(row):
            continue
        state = outcome(spec) if outcome is not None else None
        if state is not None:
            note = None if state is ItemState.SUCCEEDED else f"{state} before its process stopped"
            ended.append(_ended_row(row, state, now, note))
        elif taken_over_by is not None:
            note = f"interrupted: its process stopped; batch {taken_over_by} took over"
            ended.append(_ended_row(row, ItemState.CANCELLED, now, note))
    return ended


def _unfinished(
    stored: StoredBatch, rows: Mapping[int, ItemRow]
) -> tuple[dict[str, int], list[Unfinished]]:
    counts: dict[str, int] = {}
    unfinished = []
    for row, spec, priority in item_rows(stored, rows, {}):
        if is_finished(row):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        else:
            history = [json.dumps(a) for a in json.loads(row["history"])]
            unfinished.append((row["item_id"], spec, priority, history))
    return counts, unfinished


def _ended_row(row: ItemRow, state: ItemState, now: datetime, error: str | None) -> ItemRow:
    ended = row.copy()
    ended["status"], ended["error"], ended["finished_at"] = state.value, error, now
    return ended


__all__ = ["History", "LiveBatches", "Outcome", "Unfinished", "settled"]
