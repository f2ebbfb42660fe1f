"""Which jobs and months other processes changed: the ``changes`` table.

Every process caches jobs, timelines and month listings; this is how it hears of
what another process (a CLI run, a worker, another dashboard) committed.

**Writing.** The statements that write runs, jobs, timeline entries and month-end
snapshots :func:`note` what they change on their connection. The
:class:`~engine.store.database.Database` that runs the transaction hands the notes
to its :class:`ChangeLog`, which writes one ``changes`` row with all of them just
before the commit: the row is committed exactly when the data is, and a failed
transaction leaves none. Transactions that note nothing (batches, the monitor,
benchmarks) write nothing. Each row names its writer (one per ``Database``) so a
process can skip its own writes, which it has invalidated already.

On PostgreSQL the same transaction also notifies the channel
:data:`~engine.store.pg.CHANNEL` (LISTEN/NOTIFY, delivered at the commit), so a
listening process (:func:`waker`) polls at once instead of at its next interval.

**Reading.** :meth:`ChangeFeed.poll` returns what *other* writers committed since
the last poll, with one indexed query: the jobs and months to drop from caches,
or ``everything`` when the feed fell further behind than the rows kept.

**Order.** On SQLite writers are serialized, so sequence numbers are committed in
order. On PostgreSQL a transaction that took number 7 may commit after one that
took 8; the feed keeps such holes below its mark for :data:`HOLE_GRACE_S` and
reads them again until they appear (a rolled-back transaction's number never does).

**Pruning.** Every :data:`PRUNE_EVERY` rows a writer deletes the rows more than
:data:`KEEP` behind the newest.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, bindparam, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock, SystemClock
from engine.store.bulk import Prepared
from engine.store.pg import Listener, is_postgres, notify
from engine.store.schema import changes

if TYPE_CHECKING:
    from engine.store.database import Database

KEEP = 10_000
"""Rows kept; a feed further behind than this sees ``everything`` changed."""
PRUNE_EVERY = 1_000
"""A writer prunes after this many rows of its own."""
HOLE_GRACE_S = 30.0
"""How long a missing sequence number below the mark is read again (PostgreSQL)."""
MAX_HOLES = 1_000
"""A larger gap is not transactions in flight (e.g. a sequence's restart): not watched."""

_NOTED = "recon.changes"  # the key of the notes in the connection's info dict


@dataclass(frozen=True)
class Changes:
    """What other writers committed: the jobs and months whose cached values are old.

    ``everything``: the feed cannot tell (it fell behind the rows kept): drop all.
    """

    job_ids: frozenset[int] = frozenset()
    months: frozenset[str] = frozenset()
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.job_ids) or bool(self.months)


NO_CHANGES = Changes()


def note(conn: Connection, *, job_ids: Iterable[int] = (), months: Iterable[str] = ()) -> None:
    """Note in ``conn``'s transaction that it changes ``job_ids`` and ``months``."""
    noted: tuple[set[int], set[str]] | None = conn.info.get(_NOTED)
    if noted is None:
        noted = conn.info[_NOTED] = (set(), set())
    noted[0].update(job_ids)
    noted[1].update(months)


_INSERT = Prepared(
    lambda _: insert(changes).values(
        writer=bindparam("writer"), job_ids=bindparam("job_ids"), months=bindparam("months")
    ),
    ("writer", "job_ids", "months"),
)


class ChangeLog:
    """Writes a transaction's notes as one ``changes`` row (see the module's docstring).

    One per :class:`~engine.store.database.Database`; :attr:`writer` names it in
    the rows. Called with the database's write lock held.
    """

    def __init__(self) -> None:
        self.writer = uuid.uuid4().hex[:16]
        self._written = 0

    def commit(self, conn: Connection) -> None:
        """Write the notes of ``conn``'s transaction (called just before its commit)."""
        noted: tuple[set[int], set[str]] | None = conn.info.pop(_NOTED, None)
        if noted is None:
            return
        job_ids, months = noted
        row = (self.writer, ",".join(map(str, sorted(job_ids))), ",".join(sorted(months)))
        _INSERT.execute(conn, (row,))
        if conn.dialect.name == "postgresql":
            notify(conn, self.writer)  # delivered to the listeners when this commits
        self._written += 1
        if self._written % PRUNE_EVERY == 0:
            newest = select(func.max(changes.c.seq)).scalar_subquery()
            conn.execute(delete(changes).where(changes.c.seq <= newest - KEEP))

    @staticmethod
    def discard(conn: Connection) -> None:
        """Forget the notes of a transaction that did not commit (its connection may
        be unusable: then its notes went with it)."""
        try:
            conn.info.pop(_NOTED, None)
        except SQLAlchemyError:
            pass


Row = tuple[int, str, str, str]
"""A ``changes`` row: seq, writer, job ids, months."""


@dataclass
class Cursor:
    """How far a feed has read: every number up to :attr:`mark`, except the
    :attr:`holes` (number -> when first missed). Pure: :meth:`take` does the sums."""

    mark: int
    holes: dict[int, float] = field(default_factory=dict)

    def low(self) -> int:
        """Read the rows above this."""
        return min(self.holes) - 1 if self.holes else self.mark

    def take(self, rows: Sequence[Row], *, own: str, now: float) -> Changes:
        """The changes of ``rows`` (read above :meth:`low`, in order) not written by ``own``."""
        behind = bool(rows) and self.low() < rows[-1][0] - KEEP
        job_ids: set[int] = set()
        months: set[str] = set()
        for seq, writer, jobs_text, months_text in rows:
            if seq <= self.mark and self.holes.pop(seq, None) is None:
                continue  # read before
            if seq > self.mark:
                self._missed(seq, now)
                self.mark = seq
            if writer != own:
                job_ids.update(int(j) for j in jobs_text.split(",") if j)
                months.update(m for m in months_text.split(",") if m)
        self.holes = {s: t for s, t in self.holes.items() if now - t < HOLE_GRACE_S}
        if behind:
            self.holes.clear()
            return Changes(everything=True)
        return Changes(frozenset(job_ids), frozenset(months)) if job_ids or months else NO_CHANGES

    def _missed(self, seq: int, now: float) -> None:
        if seq - self.mark - 1 <= MAX_HOLES:
            self.holes.update(dict.fromkeys(range(self.mark + 1, seq), now))


class ChangeFeed:
    """What other writers committed to ``database`` since the last :meth:`poll`.

    Starts at the newest row when made. Its reads are housekeeping: not timed by
    the database's instrument (the monitor's figures are the engine's work). Thread-safe.

    Args:
        database: the database; its own writes (its :class:`ChangeLog`'s) are skipped.
        clock: times the holes (see the module's docstring).
    """

    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        self._database = database
        self._now = (clock or SystemClock()).monotonic
        self._lock = threading.Lock()
        with database.reading("changes", timed=False) as conn:
            newest = conn.execute(select(func.max(changes.c.seq))).scalar()
        self._cursor = Cursor(int(newest or 0))

    def poll(self) -> Changes:
        """The jobs and months other writers changed since the last poll (one query)."""
        with self._lock:
            query = (
                select(changes.c.seq, changes.c.writer, changes.c.job_ids, changes.c.months)
                .where(changes.c.seq > self._cursor.low())
                .order_by(changes.c.seq)
            )
            with self._database.reading("changes", timed=False) as conn:
                rows: list[Any] = [tuple(r) for r in conn.execute(query)]
            return self._cursor.take(rows, own=self._database.writer, now=self._now())


class Waker(Protocol):
    """Wakes a change poller early when another writer committed."""

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for news of a commit; whether some came (``False``
        at once when this waker has no way to hear of one)."""
        ...

    def close(self) -> None: ...


class NoWaker:
    """SQLite has no notifications: the poller just polls."""

    def wait(self, timeout_s: float) -> bool:
        return False

    def close(self) -> None:
        pass


def waker(database: Database) -> Waker:
    """The way ``database``'s other writers' commits wake a poller: LISTEN/NOTIFY on
    PostgreSQL (:class:`~engine.store.pg.Listener`), none on SQLite. The one place
    that chooses."""
    if is_postgres(database.url):
        return Listener(database.url, own=database.writer)
    return NoWaker()


__all__ = [
    "HOLE_GRACE_S",
    "KEEP",
    "NO_CHANGES",
    "PRUNE_EVERY",
    "ChangeFeed",
    "ChangeLog",
    "Changes",
    "Cursor",
    "NoWaker",
    "Waker",
    "note",
    "waker",
]
