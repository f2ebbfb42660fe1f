"""The whole-state comparison sees a row lost, added or changed, and nothing else."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from engine.cli.core import main

from .conftest import MONTH
from .state import Key, compare, dump, kinds, only


def test_a_lost_entry_a_changed_note_and_a_second_run_are_counted(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    args = ["run", "--month", MONTH, "--districts", "1,2", "--db", f"sqlite:///{db}"]
    assert main(args) == 0
    before = dump(db)
    counts = kinds(before)
    assert (counts["run"], counts["job"], counts["snapshot"]) == (1, 2, 2) and counts["entry"] > 2
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE timeline SET note = 'edited' WHERE id = 1")
        conn.execute("DELETE FROM timeline WHERE id = (SELECT max(id) FROM timeline)")
        conn.execute("UPDATE jobs SET completed_at = '2000-01-01T00:00:00+00:00'")  # volatile
    after = dump(db)
    diff = compare(before, after)
    assert (len(diff.lost), len(diff.extra), len(diff.differing)) == (1, 0, 1)
    (changed,) = diff.differing.values()
    assert changed == {"note": ("first snapshot", "edited")}

    assert main(args) == 0  # the month is finished: a second run of it
    again = compare(after, dump(db))
    assert {k.kind for k in again.extra} == {"run", "job", "entry"}
    assert [k for k in again.extra if k.kind == "run"] == [Key("run", MONTH, 2)]
    part = only(before, districts={"2"})
    assert part and {k.district for k in part} == {"2"}


def test_ignored_columns_are_left_out_of_the_comparison(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert main(["run", "--month", MONTH, "--districts", "3", "--db", f"sqlite:///{db}"]) == 0
    before = dump(db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE jobs SET attempts = attempts + 1")
    assert len(compare(before, dump(db)).differing) == 1
    assert compare(before, dump(db), ignore=("jobs.attempts",)).none
