"""Benchmark results (``bench_results``): one row per suite run, newest read first."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Table, select

from engine.store.schema import bench_results


class Transactions(Protocol):
    """What the bench store needs of the database (a Database or the Storage)."""

    def reading(self, operation: str = "read") -> AbstractContextManager[Connection]: ...

    def write(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None: ...


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

    def add(self, suite: str, result: Mapping[str, Any], *, quick: bool, when: datetime) -> None:
        """Record one suite's result, committed before returning."""
        row = {"created_at": when, "suite": suite, "quick": quick, "result": json.dumps(result)}
        self._database.write(bench_results, [row])

    def recent(self, limit: int = 50) -> list[BenchRecord]:
        """The latest ``limit`` results, newest first."""
        query = select(bench_results).order_by(bench_results.c.id.desc()).limit(limit)
        with self._database.reading("bench_results") as conn:
            rows = conn.execute(query).all()
        return [
            BenchRecord(r.id, r.created_at, r.suite, bool(r.quick), json.loads(r.result))
            for r in rows
        ]


__all__ = ["BenchRecord", "BenchStore"]
