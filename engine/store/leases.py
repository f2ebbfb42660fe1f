"""Named leases in the database: one holder at a time across processes and machines.

A lease (``month:2025-06``, later the watcher's) belongs to one holder until it
expires; the holder's heartbeat moves the expiry on (:meth:`Leases.renew`), and
a holder that dies without releasing frees it once its ttl has passed.
:class:`SqlLeases` implements :class:`Leases` over the ``leases`` table on SQLite
and PostgreSQL. :meth:`~SqlLeases.acquire` is one ``INSERT ... ON CONFLICT DO
UPDATE ... WHERE`` (expired, or already ours), so two processes asking at once
cannot both get it. Times come from the injected clock: the machines sharing a
database must keep their clocks within a small part of the ttl of each other.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import case, delete, or_, select, update

from engine.clock import Clock, SystemClock, as_utc
from engine.store.batches import Database
from engine.store.bulk import dialect_insert
from engine.store.schema import leases

__all__ = ["Holder", "LeaseRecord", "Leases", "SqlLeases"]


@dataclass(frozen=True)
class Holder:
    """Who claims a lease: an id unique to the claimant, and the host and pid it runs in."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Holder:
        """A new claimant in this process (two consoles of one process are two holders)."""
        host = socket.gethostname()
        pid = os.getpid()
        return cls(f"{host}:{pid}:{uuid.uuid4().hex[:12]}", host, pid)


@dataclass(frozen=True)
class LeaseRecord:
    """A lease as stored: who holds it, since when, until when."""

    name: str
    holder: Holder
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        """``host pid 123 since 2025-07-01 12:00:00 UTC`` (for a one-line message)."""
        return (
            f"{self.holder.host} pid {self.holder.pid} "
            f"since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
        )


class Leases(Protocol):
    """Where leases are kept. Every method is one transaction."""

    def acquire(self, name: str, holder: Holder, ttl_s: float) -> LeaseRecord:
        """Take ``name`` for ``ttl_s`` seconds unless another holder has it unexpired
        (taking it again as its holder renews it, keeping ``acquired_at``).

        Returns the lease as it stands: ours when ``record.holder == holder``,
        otherwise the other holder's."""
        ...

    def renew(self, name: str, holder: Holder, ttl_s: float) -> bool:
        """Move the expiry to ``ttl_s`` from now; False when ``holder`` no longer holds it."""
        ...

    def release(self, name: str, holder: Holder) -> bool:
        """Give ``name`` up; False when ``holder`` did not hold it."""
        ...

    def holder(self, name: str) -> LeaseRecord | None:
        """Who holds ``name`` now (None when nobody, or the lease has expired)."""
        ...


class SqlLeases:
    """:class:`Leases` on the engine's database (SQLite or PostgreSQL).

    Args:
        database: the storage's transactions and reads.
        clock: wall time for ``acquired_at``, heartbeats and expiry.
    """

    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        self._db = database
        self._clock = clock or SystemClock()

    def acquire(self, name: str, holder: Holder, ttl_s: float) -> LeaseRecord:
        now = self._clock.now()
        with self._db.transaction("lease_acquire") as conn:
            taken = conn.execute(_acquire(conn.dialect.name, name, holder, now, ttl_s)).first()
            row = taken or conn.execute(select(leases).where(leases.c.name == name)).one()
        return _record(row)

    def renew(self, name: str, holder: Holder, ttl_s: float) -> bool:
        now = self._clock.now()
        with self._db.transaction("lease_renew") as conn:
            done = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == holder.id)
                .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl_s))
            ).rowcount
        return bool(done)

    def release(self, name: str, holder: Holder) -> bool:
        with self._db.transaction("lease_release") as conn:
            done = conn.execute(
                delete(leases).where(leases.c.name == name, leases.c.holder == holder.id)
            ).rowcount
        return bool(done)

    def holder(self, name: str) -> LeaseRecord | None:
        now = self._clock.now()
        query = select(leases).where(leases.c.name == name, leases.c.expires_at > now)
        with self._db.reading("lease_holder") as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row)


def _acquire(dialect: str, name: str, holder: Holder, now: datetime, ttl_s: float) -> Any:
    """Insert the lease, or take over a row that expired or is already ours; RETURNING
    gives the row only when it is ours after the statement."""
    stmt = dialect_insert(dialect, leases).values(
        name=name,
        holder=holder.id,
        host=holder.host,
        pid=holder.pid,
        acquired_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    ours = leases.c.holder == stmt.excluded.holder
    return stmt.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={
            "holder": stmt.excluded.holder,
            "host": stmt.excluded.host,
            "pid": stmt.excluded.pid,
            "acquired_at": case((ours, leases.c.acquired_at), else_=stmt.excluded.acquired_at),
            "heartbeat_at": stmt.excluded.heartbeat_at,
            "expires_at": stmt.excluded.expires_at,
        },
        where=or_(ours, leases.c.expires_at <= now),
    ).returning(*leases.c)


def _record(row: Any) -> LeaseRecord:
    return LeaseRecord(
        name=row.name,
        holder=Holder(row.holder, row.host, row.pid),
        acquired_at=as_utc(row.acquired_at),
        heartbeat_at=as_utc(row.heartbeat_at),
        expires_at=as_utc(row.expires_at),
    )
