"""The schema's version: stamped in every database, checked and migrated on open.

SQLite keeps it in ``PRAGMA user_version``; PostgreSQL in the one-row table
``schema_version``. A database without a version (0) was made before versions
were stamped, or is new.

On open (:func:`open_schema`):

- a new database gets every table and the current version;
- a database of the current version gets any table it lacks (``create_all``);
- an older one is migrated when the change is additive (missing tables, and
  missing columns that may be NULL or have a server default, added with
  ``ALTER TABLE ... ADD COLUMN``), then stamped with the current version;
- anything else (an older database that lacks a required column, or one made
  by a newer version of the code) is refused with a :class:`StorageError` that
  names both versions and what to do, and nothing is changed.

A change to :mod:`engine.store.schema` bumps :data:`SCHEMA_VERSION`. An additive
change needs nothing more; any other change needs a data migration here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    func,
    inspect,
    select,
)

from engine.errors import StorageError
from engine.store.schema import metadata

SCHEMA_VERSION = 7
"""The version of :mod:`engine.store.schema` this code writes.

1: the first stamped version. 2: the ``events`` table. 3: ``timeline.warnings``.
4: the ``changes`` table. 5: the ``workers`` and ``slot_waiters`` tables.
6: ``watcher_status.period_s``. 7: ``batches.lease``, ``batches.holder``
and ``timeline.collected_on``. Each was
additive: an older database migrates in place.
"""


_versions = MetaData()
schema_version = Table("schema_version", _versions, Column("version", Integer, nullable=False))
"""PostgreSQL's version row (SQLite has ``PRAGMA user_version``)."""


@dataclass(frozen=True)
class Plan:
    """What opening a database of an older version would change."""

    tables: tuple[Table, ...]  # missing: created
    columns: tuple[Column[object], ...]  # missing and additive: added
    refused: str | None  # why the change is not additive, if it is not


def open_schema(engine: Engine, url: str) -> None:
    """Check, migrate and stamp the schema of the database behind ``engine``."""
    # Immediate: two processes opening a new SQLite file wait for each other instead
    # of failing when both try to upgrade a read to a write.
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        _one_at_a_time(conn)
        found = stored_version(conn)
        if found > SCHEMA_VERSION:
            raise StorageError(
                "open",
                f"{url} was made by a newer version (schema {found}; this code knows "
                f"schema {SCHEMA_VERSION}): upgrade the code, or use another database",
            )
        if found == SCHEMA_VERSION:
            metadata.create_all(conn)
            return
        plan = plan_migration(conn)
        if plan.refused is not None:
            raise StorageError(
                "open",
                f"{url} was made by an older version (schema {found}; this code uses "
                f"schema {SCHEMA_VERSION}) and cannot be migrated: {plan.refused}: "
                "move it away or delete it, and a new one is made",
            )
        _apply(conn, plan)
        stamp_version(conn, SCHEMA_VERSION)


_SCHEMA_LOCK = 0x7265636F  # "reco": PostgreSQL's advisory lock of the schema's opening


def _one_at_a_time(conn: Connection) -> None:
    """Processes opening one database at once check and create its schema one after
    the other: on SQLite the immediate transaction's lock does it; on PostgreSQL a
    transaction-scoped advisory lock (without it two processes creating the tables of
    a new database at once collide, and one of them fails)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))


def plan_migration(conn: Connection) -> Plan:
    """The additive changes that bring the database to :data:`SCHEMA_VERSION`."""
    found = inspect(conn)
    tables: list[Table] = []
    columns: list[Column[object]] = []
    for table in metadata.sorted_tables:
        if not found.has_table(table.name):
            tables.append(table)
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not _additive(column):
                return Plan((), (), f"{table.name} has no column {column.name}")
            columns.append(column)
    return Plan(tuple(tables), tuple(columns), None)


def _additive(column: Column[object]) -> bool:
    """Whether adding ``column`` to a table with rows needs no data."""
    return not column.primary_key and (column.nullable or column.server_default is not None)


def _apply(conn: Connection, plan: Plan) -> None:
    metadata.create_all(conn, tables=list(plan.tables))
    for column in plan.columns:
        kind = column.type.compile(dialect=conn.dialect)
        name = conn.dialect.identifier_preparer.quote(column.name)
        table = conn.dialect.identifier_preparer.quote(column.table.name)
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def stored_version(conn: Connection) -> int:
    """The version stamped in the database (0: none)."""
    if conn.dialect.name == "sqlite":
        return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(select(schema_version.c.version)).scalar() or 0)


def stamp_version(conn: Connection, version: int) -> None:
    """Stamp ``version`` in the database (tests stamp other versions)."""
    if conn.dialect.name == "sqlite":  # a PRAGMA takes no parameters: our own integer
        conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
        return
    _versions.create_all(conn)
    conn.execute(schema_version.delete())
    conn.execute(schema_version.insert().values(version=version))


__all__ = [
    "SCHEMA_VERSION",
    "Plan",
    "open_schema",
    "plan_migration",
    "schema_version",
    "stamp_version",
    "stored_version",
]
