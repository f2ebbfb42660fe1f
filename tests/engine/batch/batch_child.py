"""A batch in a child process, for test_batch's kill-and-resume test.

``python -m tests.engine.batch.batch_child DB_URL`` submits :data:`ITEMS` items; each
inserts one row into the test's own table, and from item :data:`HANG_FROM` on it
then hangs, so the batch stops mid-way until the test kills the process.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select

from engine.app.console import open_storage
from engine.batch.runner import BatchRunner
from engine.cancel import CancelToken
from engine.settings import BatchSettings, StorageSettings
from engine.store.batches import SqlBatchStore
from engine.store.storage import Storage

ITEMS = 40
HANG_FROM = 25
CONCURRENCY = 3
BATCH_SIZE = 7

test_metadata = MetaData()
done_items = Table(
    "test_done_items",
    test_metadata,
    Column("id", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
)


def build(
    storage: Storage, *, hang: bool, calls: list[tuple[str, int]] | None = None
) -> BatchRunner:
    """A runner whose items record themselves in ``done_items``; ``calls`` logs what ran."""
    test_metadata.create_all(storage.engine)
    log = calls if calls is not None else []

    def execute(spec: Mapping[str, Any], token: CancelToken) -> int:
        log.append(("execute", spec["n"]))
        with storage.transaction("test_done") as conn:
            conn.execute(insert(done_items), {"n": spec["n"]})
        if hang and spec["n"] >= HANG_FROM:
            token.wait(600)
        return int(spec["n"])

    def should_skip(spec: Mapping[str, Any]) -> bool:
        log.append(("should_skip", spec["n"]))
        query = select(func.count()).select_from(done_items).where(done_items.c.n == spec["n"])
        with storage.engine.connect() as conn:
            return int(conn.execute(query).scalar_one()) > 0

    settings = BatchSettings(
        max_concurrent_jobs=CONCURRENCY, batch_size=BATCH_SIZE, enable_resource_throttling=False
    )
    return BatchRunner(
        settings, store=SqlBatchStore(storage), execute=execute, should_skip=should_skip
    )


def main(url: str) -> None:
    storage = open_storage(StorageSettings(db_url=url))
    runner = build(storage, hang=True)
    runner.submit([{"n": n} for n in range(1, ITEMS + 1)], name="killed mid-way")
    runner.run()


if __name__ == "__main__":
    main(sys.argv[1])
