"""Where the batch runner records batches, items and attempts.

The runner talks to :class:`BatchStore`; :class:`SqlBatchStore` is the
implementation over the ``batches`` and ``batch_items`` tables. A batch row
holds the manifest (every item's spec and priority, as one JSON list); an item
gets a row when it finishes, or when it is interrupted (status ``queued``, kept
for its attempts). An item without a row is queued.

A batch a lease guards names its :class:`BatchOwner`; once no unexpired lease of
that name has that holder, the batch was abandoned (its process died) and any
process can end it (:meth:`SqlBatchStore.interrupt_abandoned`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypedDict, cast

from sqlalchemy import Connection, and_, bindparam, case, exists, func, insert, or_, select, update

from engine.domain.models import BatchStatus, ItemState
from engine.errors import NotFoundError
from engine.store.bulk import Prepared, dialect_insert
from engine.store.rows import storable_id
from engine.store.schema import batch_items, batches, leases

__all__ = [
    "BatchEnd",
    "BatchOwner",
    "BatchStore",
    "Database",
    "ItemRow",
    "NewBatch",
    "SqlBatchStore",
    "StoredBatch",
]


class ItemRow(TypedDict):
    """An item's columns as stored; ``history`` is the JSON list of its attempts."""

    batch_id: int
    item_id: int
    status: str
    attempts: int
    history: str
    result: str | None
    error: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class BatchOwner:
    """The lease whose holder runs a batch: the batch is abandoned once ``holder``
    no longer holds ``lease`` (see :mod:`engine.store.leases`)."""

    lease: str
    holder: str


@dataclass(frozen=True)
class NewBatch:
    name: str
    config: str
    """The batch's settings as a JSON object."""
    total: int
    manifest: str
    """Every item as one JSON list of ``[spec, priority]``, item ids counting from 1."""
    created_at: datetime
    owner: BatchOwner | None = None
    """None: no lease guards the batch (it is never taken for abandoned)."""


@dataclass(frozen=True)
class StoredBatch:
    id: int
    name: str
    status: BatchStatus
    config: str
    total: int
    manifest: str
    created_at: datetime
    finished_at: datetime | None
    throttled_s: float


@dataclass(frozen=True)
class BatchEnd:
    """The last write of a batch: every item is recorded."""

    batch_id: int
    status: BatchStatus
    finished_at: datetime
    throttled_s: float


CancelledRows = Callable[[StoredBatch, Mapping[int, ItemRow]], Sequence[ItemRow]]


class BatchStore(Protocol):
    """What the batch runner records and reads back."""

    def create(self, batch: NewBatch) -> int:
        """Record a new running batch; return its id."""
        ...

    def save(self, rows: Sequence[ItemRow], ends: Sequence[BatchEnd]) -> None:
        """Insert or replace item rows and end batches, in one transaction."""
        ...

    def mark_cancelled(self, batch_id: int) -> None:
        """Mark a running batch cancelled (its items are recorded as they finish)."""
        ...

    def cancelled_among(self, batch_ids: Collection[int]) -> set[int]:
        """Which of ``batch_ids`` are stored as cancelled (by any process)."""
        ...

    def ask_owner_to_cancel(self, batch_id: int, now: datetime) -> bool:
        """Mark cancelled a running batch whose owner still holds its lease: that process
        stops its items (it reads :meth:`cancelled_among`). False if no live owner runs it."""
        ...

    def cancel(self, batch_id: int, finished_at: datetime, rows: CancelledRows) -> list[ItemRow]:
        """Cancel a running batch nobody runs, with the item rows ``rows`` makes of the
        stored batch and its stored item rows, in one transaction; return those rows.
        Raises NotFoundError when no running batch has this id."""
        ...

    def interrupt(self, batch_id: int, finished_at: datetime, rows: CancelledRows) -> list[ItemRow]:
        """End a running batch a stopped process left, as ``interrupted``, with the item
        rows ``rows`` makes of it, in one transaction; return those rows. A batch no
        longer running is left alone (nothing returned)."""
        ...

    def interrupt_abandoned(self, skip: set[int], now: datetime, rows: CancelledRows) -> list[int]:
        """End as ``interrupted`` the running batches (but ``skip``) whose owner's lease
        expired by ``now``, each with the item rows ``rows`` makes of it; return their
        ids. Batches without an owner are never abandoned."""
        ...

    def unfinished(self, skip: set[int]) -> list[tuple[StoredBatch, dict[int, ItemRow]]]:
        """The running batches (but ``skip``), and the interrupted ones some of whose
        items never finished, oldest first, each with its item rows."""
        ...

    def reopen(self, batch_id: int) -> None:
        """A batch resumed by a process that holds no lease for it: running again,
        with no owner (nothing ends it as abandoned while it runs)."""
        ...

    def latest(self, limit: int) -> list[tuple[StoredBatch, dict[str, int]]]:
        """The latest batches, newest first, each with its finished items' counts by state."""
        ...

    def batch(self, batch_id: int) -> tuple[StoredBatch, dict[int, ItemRow]]:
        """A batch and its item rows by item id; NotFoundError if there is none."""
        ...


class Database(Protocol):
    """The storage methods this store uses (:class:`engine.store.storage.Storage` has them)."""

    def transaction(self, operation: str = ...) -> AbstractContextManager[Connection]: ...

    def reading(self, operation: str = ...) -> AbstractContextManager[Connection]: ...


_ITEM_NAMES = tuple(c.name for c in batch_items.c)
_FINISHED = [state.value for state in ItemState if state.finished]


def _items_upsert(dialect: str) -> Any:
    """Insert item rows, replacing those of interrupted items."""
    stmt = dialect_insert(dialect, batch_items).values({n: bindparam(n) for n in _ITEM_NAMES})
    return stmt.on_conflict_do_update(
        index_elements=["batch_id", "item_id"],
        set_={c.name: stmt.excluded[c.name] for c in batch_items.c if not c.primary_key},
    )


_UPSERT_ITEMS = Prepared(_items_upsert, _ITEM_NAMES)


class SqlBatchStore:
    """:class:`BatchStore` on the engine's database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, batch: NewBatch) -> int:
        header = {
            "name": batch.name,
            "status": BatchStatus.RUNNING.value,
            "config": batch.config,
            "total": batch.total,
            "items": batch.manifest,
            "created_at": batch.created_at,
            "throttled_s": 0.0,
            "lease": batch.owner.lease if batch.owner else None,
            "holder": batch.owner.holder if batch.owner else None,
        }
        with self._db.transaction("batch_submit") as conn:
            batch_id: int = conn.execute(
                insert(batches).values(header).returning(batches.c.id)
            ).scalar_one()
        return batch_id

    def save(self, rows: Sequence[ItemRow], ends: Sequence[BatchEnd]) -> None:
        with self._db.transaction("batch_flush") as conn:
            if rows:
                _write_items(conn, rows)
            for end in ends:
                kept = batches.c.status == BatchStatus.CANCELLED.value  # by another process
                conn.execute(
                    update(batches)
                    .where(batches.c.id == end.batch_id)
                    .values(
                        status=case((kept, batches.c.status), else_=end.status.value),
                        finished_at=end.finished_at,
                        throttled_s=end.throttled_s,
                    )
                )

    def mark_cancelled(self, batch_id: int) -> None:
        with self._db.transaction("batch_cancel") as conn:
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status == BatchStatus.RUNNING.value)
                .values(status=BatchStatus.CANCELLED.value)
            )

    def ask_owner_to_cancel(self, batch_id: int, now: datetime) -> bool:
        owned = and_(batches.c.status == BatchStatus.RUNNING.value, _held(now))
        with self._db.transaction("batch_cancel") as conn:
            marked = conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, owned)
                .values(status=BatchStatus.CANCELLED.value)
            )
        return marked.rowcount == 1

    def cancelled_among(self, batch_ids: Collection[int]) -> set[int]:
        query = select(batches.c.id).where(
            batches.c.id.in_(list(batch_ids)), batches.c.status == BatchStatus.CANCELLED.value
        )
        with self._db.reading("batch_cancelled") as conn:
            return set(conn.execute(query).scalars())

    def cancel(self, batch_id: int, finished_at: datetime, rows: CancelledRows) -> list[ItemRow]:
        cancelled = None
        if storable_id(batch_id):
            with self._db.transaction("batch_cancel") as conn:
                cancelled = _end_stored(conn, batch_id, BatchStatus.CANCELLED, finished_at, rows)
        if cancelled is None:
            raise NotFoundError("batch", batch_id, "no unfinished batch with this id")
        return cancelled

    def interrupt(self, batch_id: int, finished_at: datetime, rows: CancelledRows) -> list[ItemRow]:
        with self._db.transaction("batch_interrupt") as conn:
            # An interrupted batch's items that never finished are taken over too.
            ended = _end_stored(
                conn, batch_id, BatchStatus.INTERRUPTED, finished_at, rows, _REOPENABLE
            )
        return ended or []

    def interrupt_abandoned(self, skip: set[int], now: datetime, rows: CancelledRows) -> list[int]:
        query = select(batches.c.id).where(_abandoned(now)).order_by(batches.c.id)
        with self._db.reading("batch_abandoned") as conn:  # the usual read finds none
            found = [batch_id for batch_id in conn.execute(query).scalars() if batch_id not in skip]
        ended = []
        for batch_id in found:
            with self._db.transaction("batch_interrupt") as conn:
                # Asked again under the write: a holder may have come back meanwhile.
                if conn.execute(query.where(batches.c.id == batch_id)).first() is not None:
                    _end_stored(conn, batch_id, BatchStatus.INTERRUPTED, now, rows)
                    ended.append(batch_id)
        return ended

    def unfinished(self, skip: set[int]) -> list[tuple[StoredBatch, dict[int, ItemRow]]]:
        finished = (
            select(func.count())
            .where(batch_items.c.batch_id == batches.c.id, batch_items.c.status.in_(_FINISHED))
            .scalar_subquery()
        )
        resumable = or_(
            batches.c.status == BatchStatus.RUNNING.value,
            and_(batches.c.status == BatchStatus.INTERRUPTED.value, finished < batches.c.total),
        )
        query = select(batches).where(resumable).order_by(batches.c.id)
        with self._db.reading("batch_resume") as conn:
            found = [_stored(row) for row in conn.execute(query) if row.id not in skip]
            return [(batch, _item_rows(conn, batch.id)) for batch in found]

    def reopen(self, batch_id: int) -> None:
        with self._db.transaction("batch_reopen") as conn:
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_(_REOPENABLE))
                .values(status=BatchStatus.RUNNING.value, finished_at=None, lease=None, holder=None)
            )

    def latest(self, limit: int) -> list[tuple[StoredBatch, dict[str, int]]]:
        query = select(batches).order_by(batches.c.id.desc()).limit(limit)
        with self._db.reading("batch_list") as conn:
            found = [_stored(row) for row in conn.execute(query)]
            counts = _finished_counts(conn, [b.id for b in found])
        return [(batch, counts[batch.id]) for batch in found]

    def batch(self, batch_id: int) -> tuple[StoredBatch, dict[int, ItemRow]]:
        if not storable_id(batch_id):
            raise NotFoundError("batch", batch_id)
        with self._db.reading("batch_detail") as conn:
            return _batch_row(conn, batch_id), _item_rows(conn, batch_id)

    # --- one item at a time (the procrastinate runner's workers) -------------------------

    def item(self, batch_id: int, item_id: int) -> tuple[StoredBatch, ItemRow | None]:
        """A batch and one item's row (None: it has none yet)."""
        query = select(batch_items).where(
            batch_items.c.batch_id == batch_id, batch_items.c.item_id == item_id
        )
        with self._db.reading("batch_item") as conn:
            row = conn.execute(query).first()
            return _batch_row(conn, batch_id), cast(ItemRow, row._asdict()) if row else None

    def add_throttled(self, batch_id: int, seconds: float) -> None:
        """Add ``seconds`` an item of the batch waited for memory (workers add theirs)."""
        with self._db.transaction("batch_throttled") as conn:
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(throttled_s=batches.c.throttled_s + seconds)
            )

    def record_item(self, row: ItemRow, now: datetime) -> tuple[bool, bool]:
        """Write one item's row unless the item is finished already (say cancelled
        meanwhile), and end its batch when this was its last unfinished item: one
        transaction, the batch row locked so that two last items end it once.
        Return (written, the batch ended)."""
        batch_id = row["batch_id"]
        with self._db.transaction("batch_item") as conn:
            head = conn.execute(
                select(batches.c.status, batches.c.total, batches.c.finished_at)
                .where(batches.c.id == batch_id)
                .with_for_update()
            ).first()
            if head is None:
                raise NotFoundError("batch", batch_id)
            current = conn.execute(
                select(batch_items.c.status).where(
                    batch_items.c.batch_id == batch_id, batch_items.c.item_id == row["item_id"]
                )
            ).scalar()
            if current in _FINISHED:
                return False, False
            _write_items(conn, [row])
            if row["status"] not in _FINISHED or head.finished_at is not None:
                return True, False
            done = _finished_counts(conn, [batch_id])[batch_id]
            if sum(done.values()) < head.total:
                return True, False
            status = (
                BatchStatus.FINISHED.value if head.status == BatchStatus.RUNNING else head.status
            )
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(status=status, finished_at=now)
            )
            return True, True


_REOPENABLE = (BatchStatus.RUNNING.value, BatchStatus.INTERRUPTED.value)


def _held(now: datetime) -> Any:
    """A batch whose owner holds its lease (a process that runs it, alive)."""
    return exists().where(
        leases.c.name == batches.c.lease,
        leases.c.holder == batches.c.holder,
        leases.c.expires_at > now,
    )


def _abandoned(now: datetime) -> Any:
    """A running batch whose owner no longer holds its lease (it expired or was freed)."""
    return and_(
        batches.c.status == BatchStatus.RUNNING.value, batches.c.holder.is_not(None), ~_held(now)
    )


def _end_stored(
    conn: Connection,
    batch_id: int,
    status: BatchStatus,
    finished_at: datetime,
    rows: CancelledRows,
    among: tuple[str, ...] = (BatchStatus.RUNNING.value,),
) -> list[ItemRow] | None:
    """End a batch whose status is one of ``among`` (running) with the item rows
    ``rows`` makes; None if it is not."""
    done = conn.execute(
        update(batches)
        .where(batches.c.id == batch_id, batches.c.status.in_(among))
        .values(status=status.value, finished_at=finished_at)
    ).rowcount
    if not done:
        return None
    ended = list(rows(_batch_row(conn, batch_id), _item_rows(conn, batch_id)))
    if ended:
        _write_items(conn, ended)
    return ended


def _write_items(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    _UPSERT_ITEMS.execute(conn, [tuple(row[n] for n in _ITEM_NAMES) for row in rows])


def _stored(row: Any) -> StoredBatch:
    return StoredBatch(
        id=row.id,
        name=row.name,
        status=BatchStatus(row.status),
        config=row.config,
        total=row.total,
        manifest=row.items,
        created_at=row.created_at,
        finished_at=row.finished_at,
        throttled_s=float(row.throttled_s),
    )


def _batch_row(conn: Connection, batch_id: int) -> StoredBatch:
    row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
    if row is None:
        raise NotFoundError("batch", batch_id)
    return _stored(row)


def _item_rows(conn: Connection, batch_id: int) -> dict[int, ItemRow]:
    """The written item rows of a batch, by item id."""
    query = select(batch_items).where(batch_items.c.batch_id == batch_id)
    return {r.item_id: cast(ItemRow, r._asdict()) for r in conn.execute(query)}


def _finished_counts(conn: Connection, batch_ids: list[int]) -> dict[int, dict[str, int]]:
    """Finished items by state of each batch (the others are queued)."""
    out: dict[int, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    query = (
        select(batch_items.c.batch_id, batch_items.c.status, func.count())
        .where(batch_items.c.batch_id.in_(batch_ids), batch_items.c.status.in_(_FINISHED))
        .group_by(batch_items.c.batch_id, batch_items.c.status)
    )
    for batch_id, status, n in conn.execute(query):
        out[batch_id][status] = n
    return out
