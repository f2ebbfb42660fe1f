"""engine.bulk.executemany stores exactly what ``conn.execute`` stores, on a
SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, create_engine, insert, select, update

from engine.bulk import _plan, executemany
from engine.schema import batch_items, batches, metadata
from tests.postgres import postgres_server

UPDATE = (
    update(batch_items)
    .where(batch_items.c.batch_id == bindparam("b_batch_id"))
    .where(batch_items.c.item_id == bindparam("b_item_id"))
)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bulk.db'}"
    else:
        url = request.getfixturevalue("pg_server")
    db = create_engine(url)
    metadata.drop_all(db)
    metadata.create_all(db)
    with db.begin() as conn:
        conn.execute(insert(batches), [_batch(1), _batch(2)])
    yield db
    metadata.drop_all(db)
    db.dispose()


def _batch(batch_id: int) -> dict[str, Any]:
    return {
        "id": batch_id,
        "name": "t",
        "status": "running",
        "config": "{}",
        "total": 3,
        "items": '[[{"district": "F"}, 0]]',
        "created_at": datetime(2025, 7, 1, tzinfo=UTC),
        "throttled_s": 0.0,
    }


def _items(batch_id: int) -> list[dict[str, Any]]:
    east = timezone(timedelta(hours=5, minutes=30))
    return [
        {
            "batch_id": batch_id,
            "item_id": n,
            "status": "queued",
            "attempts": n,
            "history": '[{"error": "it\'s"}]',
            "result": None if n == 1 else "ünïcode ✓",
            "error": None,
            "finished_at": [None, datetime(2025, 7, 2, 3, 4, 5, 678901, tzinfo=UTC),
                            datetime(2025, 7, 2, 9, 0, tzinfo=east)][n - 1],
        }
        for n in (1, 2, 3)
    ]  # fmt: skip


def _stored(db: Engine, batch_id: int) -> list[tuple[Any, ...]]:
    query = select(batch_items).where(batch_items.c.batch_id == batch_id)
    with db.connect() as conn:
        return [
            tuple(r)[1:] for r in conn.execute(query.order_by(batch_items.c.item_id))
        ]  # without batch_id


def test_insert_stores_what_execute_stores(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(batch_items), _items(1))
        executemany(conn, insert(batch_items), _items(2))
    assert _stored(engine, 2) == _stored(engine, 1)
    assert len(_stored(engine, 1)) == 3


def test_update_with_bound_keys(engine: Engine) -> None:
    rows = [
        {"b_batch_id": b, "b_item_id": 2, "status": "failed", "error": "Boom: 'x' \"y\" \n"}
        for b in (1, 2)
    ]
    with engine.begin() as conn:
        conn.execute(insert(batch_items), _items(1) + _items(2))
        conn.execute(UPDATE, rows[:1])
        executemany(conn, UPDATE, rows[1:])
    assert _stored(engine, 2) == _stored(engine, 1)
    assert _stored(engine, 2)[1][1:3] == ("failed", 2)  # status, attempts: only the named columns


def test_a_statement_is_compiled_once_per_dialect_and_keys(engine: Engine) -> None:
    statement = insert(batch_items)
    keys = tuple(_items(1)[0])
    with engine.begin() as conn:
        first = _plan(conn, statement, keys)
        assert _plan(conn, statement, keys) is first
        assert _plan(conn, statement, keys[:-1]) is not first
        assert _plan(conn, insert(batch_items), keys) is not first  # another statement
        executemany(conn, statement, _items(1)[:1])
        executemany(conn, statement, _items(1)[1:])
        executemany(conn, statement, [])
    assert [r[0] for r in _stored(engine, 1)] == [1, 2, 3]


def test_a_missing_value_fails_before_anything_is_written(engine: Engine) -> None:
    header = _batch(3)
    del header["throttled_s"]  # a Python-side default, which executemany does not fill in
    rows = _items(1)
    del rows[2]["status"]  # the rows share their keys
    with engine.begin() as conn:
        with pytest.raises(KeyError, match="throttled_s"):
            executemany(conn, insert(batches), [header])
        with pytest.raises(KeyError, match="status"):
            executemany(conn, insert(batch_items), rows)
    assert _stored(engine, 1) == []
