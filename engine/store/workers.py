"""Where ``recon worker`` processes say they are alive, and what they work.

Each worker of the procrastinate runner has a row in ``workers``; its heartbeat
moves ``heartbeat_at`` on and writes the items it runs. A worker whose heartbeat
is older than the stall timeout is lost (:attr:`WorkerRecord.lost` is computed
by the reader, who knows the timeout and the time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from engine.store.batches import Database
from engine.store.schema import workers

__all__ = ["SqlWorkerStore", "WorkerRecord"]


@dataclass(frozen=True)
class WorkerRecord:
    """A worker as stored; ``running`` holds ``(batch_id, item_id)`` pairs."""

    id: int
    host: str
    pid: int
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: tuple[tuple[int, int], ...]
    done: int

    def lost(self, now: datetime, stall_timeout_s: float) -> bool:
        """Whether its heartbeat is older than ``stall_timeout_s`` at ``now``."""
        return (now - self.heartbeat_at).total_seconds() > stall_timeout_s


class SqlWorkerStore:
    """The ``workers`` table on the engine's database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def register(self, host: str, pid: int, concurrency: int, now: datetime) -> int:
        values = {"host": host, "pid": pid, "concurrency": concurrency, "started_at": now,
                  "heartbeat_at": now, "running": "[]", "done": 0}  # fmt: skip
        with self._db.transaction("worker_register") as conn:
            worker_id: int = conn.execute(
                insert(workers).values(values).returning(workers.c.id)
            ).scalar_one()
        return worker_id

    def beat(
        self, worker_id: int, now: datetime, running: list[tuple[int, int]], done: int
    ) -> None:
        """The worker is alive at ``now`` and runs ``running``."""
        values = {"heartbeat_at": now, "running": json.dumps(running), "done": done}
        with self._db.transaction("worker_heartbeat") as conn:
            conn.execute(update(workers).where(workers.c.id == worker_id).values(values))

    def remove(self, worker_id: int) -> None:
        with self._db.transaction("worker_stop") as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    def list(self) -> list[WorkerRecord]:
        """Every worker with a row, oldest first."""
        with self._db.reading("worker_list") as conn:
            return [_record(row) for row in conn.execute(select(workers).order_by(workers.c.id))]


def _record(row: Any) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        concurrency=row.concurrency,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        running=tuple((int(b), int(i)) for b, i in json.loads(row.running)),
        done=row.done,
    )
