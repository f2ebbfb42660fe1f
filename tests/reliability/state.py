"""The whole reconciliation state of a database, and how two such states differ.

A faulted run is judged by comparing its database with an uninterrupted run of
the same seed: every run, every job, every timeline entry (with its metrics,
changes and note) and every month-end snapshot. Rows are keyed by what they
mean, not by their ids: a run by (month, its ordinal among the month's runs), a
job by (month, run ordinal, district), an entry by (month, run ordinal, district,
as-of), a snapshot by (month, district), the table's own key (its as-of is compared
as a value).

Every column is compared except those two correct runs of the same seed do not
share (:data:`VOLATILE`):

- row ids (``runs.id``, ``jobs.id``, ``jobs.run_id``, ``timeline.id``,
  ``timeline.job_id``, ``month_end_snapshots.job_id``): the database hands them out
  in commit order, which a second process or a re-run changes; the keys above
  stand for them (a snapshot's job is compared as its run ordinal);
- wall-clock times (``runs.created_at``, ``jobs.created_at``, ``jobs.completed_at``,
  ``timeline.checked_at``, ``month_end_snapshots.updated_at``): when the work was
  done, not what it found.

A comparison may leave out more with ``ignore=`` and must say why (a crash test
ignores ``jobs.attempts``: the resumed replay counts one more attempt by design).
The batch runner's tables and the monitor's are records of how the work went,
not its result, and are not part of the state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import RowMapping, Table, create_engine, select

from engine.store.schema import jobs, month_end_snapshots, runs, timeline

VOLATILE = frozenset(
    {
        "runs.id", "runs.created_at",
        "jobs.id", "jobs.run_id", "jobs.created_at", "jobs.completed_at",
        "timeline.id", "timeline.job_id", "timeline.checked_at",
        "month_end_snapshots.job_id", "month_end_snapshots.updated_at",
    }
)  # fmt: skip


TABLES = {"run": "runs", "job": "jobs", "entry": "timeline", "snapshot": "month_end_snapshots"}


class Key(NamedTuple):
    """What a row stands for: kind (run, job, entry, snapshot), month, run ordinal, ..."""

    kind: str
    month: str
    run: int = 0
    district: str = ""
    as_of: str = ""


Row = Mapping[str, object]
State = Mapping[Key, Row]


def _kept(table: Table) -> list[str]:
    return [c.name for c in table.columns if f"{table.name}.{c.name}" not in VOLATILE]


def dump(db: Path | str) -> dict[Key, Row]:
    """Every run, job, timeline entry and month-end snapshot of ``db`` (a SQLite file,
    or a database URL: SQLite or PostgreSQL)."""
    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            run_rows = conn.execute(select(runs).order_by(runs.c.id)).mappings().all()
            job_rows = conn.execute(select(jobs)).mappings().all()
            entry_rows = conn.execute(select(timeline)).mappings().all()
            snap_rows = conn.execute(select(month_end_snapshots)).mappings().all()
    finally:
        engine.dispose()
    state: dict[Key, Row] = {}
    ordinal: dict[int, int] = {}  # run id -> its ordinal among its month's runs
    per_month: Counter[str] = Counter()
    for r in run_rows:
        per_month[r["month"]] += 1
        ordinal[r["id"]] = per_month[r["month"]]
        state[Key("run", r["month"], ordinal[r["id"]])] = _values(runs, r)
    job_key = {
        j["id"]: Key("job", j["month"], ordinal[j["run_id"]], j["district"]) for j in job_rows
    }
    for j in job_rows:
        state[job_key[j["id"]]] = _values(jobs, j)
    for e in entry_rows:
        owner = job_key[e["job_id"]]
        state[owner._replace(kind="entry", as_of=str(e["as_of"]))] = _values(timeline, e)
    for s in snap_rows:
        writer = job_key.get(s["job_id"])
        state[Key("snapshot", s["month"], district=s["district"])] = {
            **_values(month_end_snapshots, s),
            "job_run": writer.run if writer else None,
        }
    return state


def _values(table: Table, row: RowMapping) -> dict[str, object]:
    return {name: row[name] for name in _kept(table)}


@dataclass(frozen=True)
class Difference:
    """How ``got`` differs from ``expected``: rows lost, rows extra, rows differing."""

    compared: int
    lost: list[Key] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    differing: dict[Key, dict[str, tuple[object, object]]] = field(default_factory=dict)

    @property
    def none(self) -> bool:
        return not (self.lost or self.extra or self.differing)

    def figures(self) -> dict[str, int]:
        """The counts a report shows: rows compared, lost, extra, differing."""
        return {
            "rows_compared": self.compared,
            "lost": len(self.lost),
            "extra": len(self.extra),
            "differing": len(self.differing),
        }

    def describe(self, limit: int = 8) -> str:
        """The first few differences, for an assertion message."""
        lines = [f"{self.figures()}"]
        lines += [f"lost {k}" for k in self.lost[:limit]]
        lines += [f"extra {k}" for k in self.extra[:limit]]
        lines += [f"differs {k}: {v}" for k, v in list(self.differing.items())[:limit]]
        return "\n".join(lines)


def compare(expected: State, got: State, *, ignore: Collection[str] = ()) -> Difference:
    """Compare two states; ``ignore`` names more columns (``table.column``) to leave out."""
    differing: dict[Key, dict[str, tuple[object, object]]] = {}
    for key in expected.keys() & got.keys():
        a, b, table = expected[key], got[key], TABLES[key.kind]
        delta = {
            c: (a[c], b.get(c)) for c in a if f"{table}.{c}" not in ignore and a[c] != b.get(c)
        }
        if delta:
            differing[key] = delta
    return Difference(
        compared=len(expected.keys() | got.keys()),
        lost=sorted(expected.keys() - got.keys()),
        extra=sorted(got.keys() - expected.keys()),
        differing=dict(sorted(differing.items())),
    )


def only(state: State, *, districts: Collection[str]) -> dict[Key, Row]:
    """The part of ``state`` that belongs to ``districts`` (runs belong to none)."""
    return {k: v for k, v in state.items() if k.district in districts}


def kinds(state: State) -> Counter[str]:
    """How many rows of each kind: a comparison of empty states proves nothing."""
    return Counter(key.kind for key in state)
