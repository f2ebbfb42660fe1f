"""Batches as stored, overlaid with what this process knows and has not written yet.

Reads for ``recon batch list/show``, the dashboard and the API, and the two
operations on stored batches: cancelling one nobody runs, and loading the
unfinished ones for a resume.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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

Unfinished = tuple[int, Spec, int, list[str]]
"""An item to queue again: its id, spec, priority and attempts so far (JSON objects)."""


class LiveBatches(Protocol):
    """What the running process knows of its own batches."""

    def live_rows(self, batch_id: int) -> dict[int, ItemRow]:
        """Rows of the batch's items not written yet (none for other batches)."""
        ...

    def live_counts(self, batch_id: int) -> tuple[dict[str, int], float] | None:
        """Counts by state and throttled seconds; None for other batches."""
        ...


class History:
    """Reads and cancels stored batches. Thread-safe if ``live`` is."""

    def __init__(self, store: BatchStore, live: LiveBatches) -> None:
        self._store = store
        self._live = live

    def list_batches(self, limit: int) -> list[BatchInfo]:
        """The latest batches, newest first (live counters for this process's batches)."""
        return [self._info(b, counts_of(b.total, c)) for b, c in self._store.latest(limit)]

    def batch_detail(self, batch_id: int) -> BatchDetail:
        """A batch with every item and its attempts (what is not written yet included)."""
        live = self._live.live_rows(batch_id)  # first: a row written meanwhile is then read too
        stored, rows = self._store.batch(batch_id)
        records = [item_record(*found) for found in item_rows(stored, rows, live)]
        counts: dict[str, int] = {}
        for item in records:
            counts[item.status.value] = counts.get(item.status.value, 0) + 1
        return BatchDetail(self._info(stored, counts), tuple(records))

    def cancel(self, batch_id: int, now: datetime) -> list[Event]:
        """Cancel a stored batch nobody runs, and its unfinished items; return their events."""
        specs: dict[int, Spec] = {}

        def cancelled(stored: StoredBatch, rows: Mapping[int, ItemRow]) -> list[ItemRow]:
            found = [(r, s) for r, s, _ in item_rows(stored, rows, {}) if not is_finished(r)]
            specs.update((r["item_id"], spec) for r, spec in found)
            return [_cancelled_row(r, now) for r, _ in found]

        done = self._store.cancel(batch_id, now, cancelled)
        kind = ItemState.CANCELLED.value
        return [
            event(kind, batch_id, n, specs[n], error="cancelled")
            for n in (row["item_id"] for row in done)
        ]

    def unfinished(
        self, known: set[int]
    ) -> list[tuple[StoredBatch, dict[str, int], list[Unfinished]]]:
        """The stored running batches but ``known``, with finished counts and unfinished items."""
        return [(b, *_unfinished(b, rows)) for b, rows in self._store.unfinished(known)]

    def _info(self, stored: StoredBatch, counts: Mapping[str, int]) -> BatchInfo:
        live = self._live.live_counts(stored.id)
        if live is None:
            return batch_info(stored, counts)
        return batch_info(stored, live[0], live[1])


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


def _cancelled_row(row: ItemRow, now: datetime) -> ItemRow:
    cancelled = row.copy()
    cancelled["status"], cancelled["error"], cancelled["finished_at"] = (
        "cancelled",
        "cancelled",
        now,
    )
    return cancelled


__all__ = ["History", "LiveBatches", "Unfinished"]
