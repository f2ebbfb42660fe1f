"""engine.store.bulk.Prepared stores exactly what ``conn.execute`` stores, on a SQLite
file and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, create_engine, insert, select, update

from engine.store.bulk import Prepared, dialect_insert, raw_rows
from engine.store.pg import scratch_database
from engine.store.schema import batch_items, batches, metadata

NAMES = ("batch_id", "item_id", "status", "attempts", "history", "result", "error", "finished_at")
INSERT = Prepared(
    lambda dialect: insert(batch_items).values({n: bindparam(n) for n in NAMES}), NAMES
)
SET = ("status", "error", "b_batch_id", "b_item_id")
UPDATE = Prepared(
    lambda dialect: (
        update(batch_items)
        .where(batch_items.c.batch_id == bindparam("b_batch_id"))
        .where(batch_items.c.item_id == bindparam("b_item_id"))
        .values(status=bindparam("status"), error=bindparam("error"))
    ),
    SET,
)


def _upsert(dialect: str) -> Any:
    stmt = dialect_insert(dialect, batch_items).values({n: bindparam(n) for n in NAMES})
    return stmt.on_conflict_do_update(
        index_elements=["batch_id", "item_id"], set_={"status": stmt.excluded.status}
    )


UPSERT = Prepared(_upsert, NAMES)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bulk.db'}"
    else:  # a new database on the session's server
        scratch = scratch_database(request.getfixturevalue("pg_server"), prefix="recon_bulk")
        url = scratch.__enter__()
        request.addfinalizer(lambda: scratch.__exit__(None, None, None))
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


def _tuples(rows: list[dict[str, Any]], names: tuple[str, ...] = NAMES) -> list[tuple[Any, ...]]:
    return [tuple(r[n] for n in names) for r in rows]


def _stored(db: Engine, batch_id: int) -> list[tuple[Any, ...]]:
    query = select(batch_items).where(batch_items.c.batch_id == batch_id)
    with db.connect() as conn:
        rows = conn.execute(query.order_by(batch_items.c.item_id))
        return [tuple(r)[1:] for r in rows]  # without batch_id


def test_insert_stores_what_execute_stores(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(batch_items), _items(1))
        INSERT.execute(conn, _tuples(_items(2)))
    assert _stored(engine, 2) == _stored(engine, 1)
    assert len(_stored(engine, 1)) == 3
    assert _stored(engine, 1)[1][-1] == datetime(2025, 7, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_update_with_named_binds(engine: Engine) -> None:
    rows = [
        {"b_batch_id": b, "b_item_id": 2, "status": "failed", "error": "Boom: 'x' \"y\" \n"}
        for b in (1, 2)
    ]
    with engine.begin() as conn:
        conn.execute(insert(batch_items), _items(1) + _items(2))
        conn.execute(
            update(batch_items)
            .where(batch_items.c.batch_id == bindparam("b_batch_id"))
            .where(batch_items.c.item_id == bindparam("b_item_id")),
            rows[:1],
        )
        UPDATE.execute(conn, _tuples(rows[1:], SET))
    assert _stored(engine, 2) == _stored(engine, 1)
    assert _stored(engine, 2)[1][1:3] == ("failed", 2)  # status, and attempts untouched


def test_upsert_replaces_only_what_it_sets(engine: Engine) -> None:
    first = _items(1)
    again = [{**r, "status": "succeeded", "attempts": 9} for r in first[:2]]
    with engine.begin() as conn:
        UPSERT.execute(conn, _tuples(first))
        UPSERT.execute(conn, _tuples(again))
        UPSERT.execute(conn, [])
    stored = _stored(engine, 1)
    assert [(r[1], r[2]) for r in stored] == [("succeeded", 1), ("succeeded", 2), ("queued", 3)]


def test_names_out_of_the_statements_order_are_refused(engine: Engine) -> None:
    wrong = Prepared(
        lambda dialect: insert(batch_items).values({n: bindparam(n) for n in NAMES}),
        tuple(reversed(NAMES)),
    )
    with engine.begin() as conn:
        if conn.dialect.positional:
            with pytest.raises(AssertionError, match="statement's order"):
                wrong.execute(conn, _tuples(_items(1), tuple(reversed(NAMES))))
        else:  # named parameters: the order does not matter
            wrong.execute(conn, _tuples(_items(1), tuple(reversed(NAMES))))
    assert len(_stored(engine, 1)) == (0 if engine.dialect.positional else 3)


@pytest.mark.parametrize("given_as", [list, iter])
def test_many_rows_in_chunks_and_a_key_twice_in_one_call(
    engine: Engine, given_as: Callable[[list[tuple[Any, ...]]], Iterable[tuple[Any, ...]]]
) -> None:
    many = [
        {**_items(1)[1], "item_id": n, "status": "queued" if n % 2 else "failed"}
        for n in range(1, 302)
    ]  # more rows than one SQLite statement takes
    later = [{**many[0], "status": "succeeded"}]
    with engine.begin() as conn:
        UPSERT.execute(conn, given_as(_tuples(many + later)))  # a list, or rows read once
    stored = _stored(engine, 1)
    assert [r[0] for r in stored] == list(range(1, 302))
    assert [r[1] for r in stored[:3]] == ["succeeded", "failed", "queued"]  # the last one wins


def test_raw_rows_read_what_execute_reads(engine: Engine) -> None:
    many = [{**_items(1)[n % 3], "item_id": n} for n in range(1, 251)]  # several batches
    with engine.begin() as conn:
        conn.execute(insert(batch_items), many)
    query = select(batch_items).where(batch_items.c.batch_id == 1).order_by(batch_items.c.item_id)
    with engine.connect() as conn:
        expected = [tuple(r) for r in conn.execute(query)]
        got = list(raw_rows(conn, query, batch=100))
    assert got == expected and len(got) == 250
    assert isinstance(got[1][-1], datetime) and got[1][-1].tzinfo is not None  # converted
