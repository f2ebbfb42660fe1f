"""What the batch runner hands out and writes: its records, rows, attempts and events.

:func:`item_rows` is the one place where an item's state is worked out from
what is known of it: the runner's live row, else the stored row, else queued.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

from engine.clock import as_utc
from engine.domain.models import BatchStatus, ItemState
from engine.errors import ConfigError
from engine.settings import BatchSettings
from engine.store.batches import BatchOwner, ItemRow, NewBatch, StoredBatch

Spec = Mapping[str, Any]

FINISHED = frozenset(state for state in ItemState if state.finished)
"""The item states after which an item never runs again (also the types of their events)."""


@dataclass(frozen=True)
class ItemSpec:
    """One item of work: a JSON-serializable spec for ``execute``, and its priority."""

    spec: Spec
    priority: int = 0


@dataclass(frozen=True)
class SubmitResult:
    batch_id: int
    config: BatchSettings
    """The batch's settings after clamping."""
    notes: tuple[str, ...]
    """What clamping changed, for the user to see."""


@dataclass(frozen=True)
class BatchProgress:
    """A consistent snapshot: the item counters add up to ``total``."""

    batch_id: int
    total: int
    queued: int
    running: int
    retrying: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    throughput: float
    """Finished items per second over the last few dozen."""
    eta_s: float | None
    """Seconds left at the current throughput; None before anything finished."""
    elapsed_s: float
    throttled_s: float
    done: bool
    """Every item finished and recorded."""
    percent: float


@dataclass(frozen=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    ended_at: datetime
    outcome: str
    error: str | None


@dataclass(frozen=True)
class ItemRecord:
    item_id: int
    spec: Spec
    priority: int
    status: ItemState
    result: Any
    error: str | None
    finished_at: datetime | None
    attempts: tuple[AttemptRecord, ...]


@dataclass(frozen=True)
class BatchInfo:
    batch_id: int
    name: str
    status: BatchStatus
    created_at: datetime
    finished_at: datetime | None
    total: int
    counts: Mapping[str, int]
    throttled_s: float
    config: Mapping[str, Any]


@dataclass(frozen=True)
class BatchDetail:
    info: BatchInfo
    items: tuple[ItemRecord, ...]


# --- items as stored ------------------------------------------------------------------


def item_rows(
    stored: StoredBatch, rows: Mapping[int, ItemRow], live: Mapping[int, ItemRow]
) -> Iterator[tuple[ItemRow, Spec, int]]:
    """Every item of a batch with its spec and priority, in order, as its row: the live
    one (this process runs it), else the stored one, else queued (no row yet)."""
    for n, (spec, priority) in enumerate(json.loads(stored.manifest), 1):
        row = live.get(n) or rows.get(n) or queued_row(stored.id, n)
        yield row, spec, priority


def is_finished(row: ItemRow) -> bool:
    return row["status"] in FINISHED


def queued_row(batch_id: int, item_id: int) -> ItemRow:
    """The columns of an item that has no row yet."""
    return {"batch_id": batch_id, "item_id": item_id, "status": ItemState.QUEUED.value,
            "attempts": 0, "history": "[]", "result": None, "error": None,
            "finished_at": None}  # fmt: skip


def counts_of(total: int, finished: Mapping[str, int]) -> dict[str, int]:
    """Counts by state from the finished counts: every other item is queued."""
    counts = dict(finished)
    if queued := total - sum(finished.values()):
        counts[ItemState.QUEUED.value] = queued
    return counts


def item_record(row: ItemRow, spec: Spec, priority: int) -> ItemRecord:
    result = row["result"]
    finished_at = row["finished_at"]
    return ItemRecord(
        item_id=row["item_id"],
        spec=spec,
        priority=priority,
        status=ItemState(row["status"]),
        result=json.loads(result) if result is not None else None,
        error=row["error"],
        finished_at=finished_at and as_utc(finished_at),
        attempts=tuple(_attempt_record(a) for a in json.loads(row["history"])),
    )


def batch_info(
    stored: StoredBatch, counts: Mapping[str, int], throttled_s: float | None = None
) -> BatchInfo:
    """``stored`` with ``counts``; ``throttled_s`` when this process knows better."""
    return BatchInfo(
        batch_id=stored.id,
        name=stored.name,
        status=stored.status,
        created_at=as_utc(stored.created_at),
        finished_at=stored.finished_at and as_utc(stored.finished_at),
        total=stored.total,
        counts=dict(counts),
        throttled_s=stored.throttled_s if throttled_s is None else throttled_s,
        config=json.loads(stored.config),
    )


def entry(item: ItemSpec | tuple[Spec, int] | Spec) -> tuple[Spec, int]:
    """An item as submitted (an ItemSpec, a ``(spec, priority)`` pair or a bare spec)
    as ``(spec, priority)``."""
    if isinstance(item, ItemSpec):
        return item.spec, item.priority
    if isinstance(item, tuple):
        return item[0], int(item[1])
    return item, 0


def manifest(entries: list[tuple[Spec, int]]) -> str:
    """The batch's items as stored: one JSON list of ``[spec, priority]``."""
    try:
        return json.dumps([[spec, priority] for spec, priority in entries])
    except (TypeError, ValueError) as exc:
        for spec, _ in entries:
            _dumps(spec)  # names the first spec that cannot be stored
        raise ConfigError("items", len(entries), f"not JSON-serializable: {exc}") from exc


def new_batch(
    name: str,
    settings: BatchSettings,
    entries: list[tuple[Spec, int]],
    now: datetime,
    owner: BatchOwner | None = None,
) -> NewBatch:
    """A batch of ``entries`` to record, with its clamped ``settings``."""
    config = json.dumps(dataclasses.asdict(settings))
    return NewBatch(name, config, len(entries), manifest(entries), now, owner)


def _dumps(spec: Spec) -> str:
    try:
        return json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise ConfigError("spec", spec, f"not JSON-serializable: {exc}") from exc


# --- attempts -----------------------------------------------------------------------------


def history_json(attempts: list[str]) -> str:
    return f"[{', '.join(attempts)}]"


def attempt_json(
    attempt: int,
    started: datetime,
    duration_s: float,
    outcome: str,
    error: str | None,
    progressed: bool,
) -> str:
    """One attempt as a JSON object, written out directly: ``json.dumps`` of the
    same dict costs more than the rest of a short item's bookkeeping."""
    quoted = "null" if error is None else encode_basestring_ascii(error)
    duration = float(duration_s)
    seconds = repr(duration) if math.isfinite(duration) else json.dumps(duration)  # NaN
    return (
        f'{{"attempt": {attempt}, "started_at": "{started.isoformat()}", '
        f'"duration_s": {seconds}, "outcome": "{outcome}", "error": {quoted}, '
        f'"progressed": {"true" if progressed else "false"}}}'
    )


def _attempt_record(a: Mapping[str, Any]) -> AttemptRecord:
    started = datetime.fromisoformat(a["started_at"])
    ended = started + timedelta(seconds=a["duration_s"])
    return AttemptRecord(a["attempt"], started, ended, a["outcome"], a["error"])


def describe(exc: object) -> str:
    """An error as users see it: ``Type: message``."""
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)


__all__ = [
    "FINISHED",
    "AttemptRecord",
    "BatchDetail",
    "BatchInfo",
    "BatchProgress",
    "ItemRecord",
    "ItemSpec",
    "SubmitResult",
    "attempt_json",
    "batch_info",
    "counts_of",
    "describe",
    "entry",
    "history_json",
    "item_record",
    "item_rows",
    "manifest",
    "new_batch",
    "queued_row",
]
