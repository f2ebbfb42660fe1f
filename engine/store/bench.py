"""Benchmark results (``bench_results``): one row per suite run, newest read first."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row, insert, select

from engine.errors import ConfigError
from engine.store.schema import bench_results


class Transactions(Protocol):
    """What the bench store needs of the database (a Database or the Storage)."""

    def reading(self, operation: str = "read") -> AbstractContextManager[Connection]: ...

    def transaction(self, operation: str = "transaction") -> AbstractContextManager[Connection]: ...


@dataclass(frozen=True)
class BenchRecord:
    """One stored suite run: its JSON result as written."""

    id: int
    created_at: datetime
    suite: str
    quick: bool
    result: dict[str, Any]


class BenchStore:
    """Benchmark results in the database."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def add(self, suite: str, result: Mapping[str, Any], *, quick: bool, when: datetime) -> int:
        """Record one suite's result, committed before returning; its id."""
        row = {"created_at": when, "suite": suite, "quick": quick, "result": json.dumps(result)}
        with self._database.transaction("bench_results") as conn:
            key = conn.execute(insert(bench_results).values(row)).inserted_primary_key
        return int(key[0]) if key is not None else 0

    def recent(self, limit: int = 50, *, suite: str | None = None) -> list[BenchRecord]:
        """The latest ``limit`` results (of ``suite``, or every suite), newest first."""
        query = select(bench_results).order_by(bench_results.c.id.desc()).limit(limit)
        if suite is not None:
            query = query.where(bench_results.c.suite == suite)
        with self._database.reading("bench_results") as conn:
            rows = conn.execute(query).all()
        return [_record(r) for r in rows]

    def get(self, record_id: int) -> BenchRecord:
        """One stored result; ConfigError when there is none with that id."""
        query = select(bench_results).where(bench_results.c.id == record_id)
        with self._database.reading("bench_results") as conn:
            row = conn.execute(query).first()
        if row is None:
            raise ConfigError("bench result", record_id, "no stored benchmark result with this id")
        return _record(row)


def _record(row: Row[Any]) -> BenchRecord:
    return BenchRecord(row.id, row.created_at, row.suite, bool(row.quick), json.loads(row.result))


__all__ = ["BenchRecord", "BenchStore"]
