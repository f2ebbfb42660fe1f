"""Rows <-> engine values for the reconciliation tables, and their write statements.

Jobs and timeline entries are read by position and written as tuples through
:class:`~engine.store.bulk.Prepared` statements: timelines are read and written
in bulk, and per-row work is what the storage benchmark measures.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, bindparam, update

from engine.domain.models import (
    Job,
    JobStatus,
    MetricChange,
    Phase,
    Reason,
    Snapshot,
    TimelineEntry,
)
from engine.errors import StorageError
from engine.store import changes
from engine.store.bulk import Prepared, dialect_insert
from engine.store.schema import jobs, month_end_snapshots, timeline

_JOB_PROGRESS_COLUMNS = (
    "status",
    "phase",
    "reason",
    "error",
    "completed_at",
    "final_as_of",
    "last_check_date",
    "checks",
    "significant_changes",
    "stable_days",
    "extension_days",
    "last_significant_as_of",
    "attempts",
    "significant_dates",
)


MAX_ID = 2**31 - 1
"""The largest row id a table can hold (PostgreSQL's ``integer``; SQLite has more)."""


def storable_id(row_id: int) -> bool:
    """Whether ``row_id`` fits an id column: a larger one names no row (PostgreSQL
    would refuse the comparison as out of range, not answer "none")."""
    return -MAX_ID - 1 <= row_id <= MAX_ID


def new_job_row(run_id: int, district: str, month: str, now: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "district": district,
        "month": month,
        "status": JobStatus.PENDING.value,
        "created_at": now,
        "checks": 0,
        "significant_changes": 0,
        "stable_days": 0,
        "extension_days": 0,
        "attempts": 0,
        "significant_dates": "",
    }


def _job_progress_row(job: Job) -> tuple[Any, ...]:
    """A job's progress columns in :data:`_JOB_PROGRESS_COLUMNS` order, then its id."""
    return (
        job.status.value,
        job.phase.value if job.phase else None,
        job.reason.value if job.reason else None,
        job.error,
        job.completed_at,
        job.final_as_of,
        job.last_check_date,
        job.checks,
        job.significant_changes,
        job.stable_days,
        job.extension_days,
        job.last_significant_as_of,
        job.attempts,
        ",".join(map(date.isoformat, job.significant_dates)),
        job.id,
    )


# Enum members by value: a dict lookup instead of the enum's call machinery.
_STATUSES = {s.value: s for s in JobStatus}
_PHASES = {p.value: p for p in Phase}
_REASONS = {r.value: r for r in Reason}


# Jobs are read by position, in the order of Job's fields (a KeyError here if the
# model and the table drift apart).
JOB_COLUMNS = tuple(jobs.c[f.name] for f in dataclasses.fields(Job))


def job_from_row(r: Sequence[Any]) -> Job:
    """A job from its row (its timestamps are aware UTC: see ``UTCDateTime``)."""
    (id_, run_id, district, month, status, phase, reason, error, created_at, completed_at,
     final_as_of, last_check_date, checks, significant_changes, stable_days, extension_days,
     last_significant_as_of, attempts, dates) = r  # fmt: skip
    return Job.from_stored(
        id_,
        run_id,
        district,
        month,
        _STATUSES[status],
        _PHASES.get(phase),
        _REASONS.get(reason),
        error,
        created_at,
        completed_at,
        final_as_of,
        last_check_date,
        checks,
        significant_changes,
        stable_days,
        extension_days,
        last_significant_as_of,
        attempts,
        tuple(map(date.fromisoformat, dates.split(","))) if dates else (),
    )


_ENTRY_NAMES = (
    "job_id",
    "as_of",
    "checked_at",
    "data_month",
    "metrics",
    "changes",
    "significant",
    "note",
    "warnings",
)
# Entries are read by position (cheaper than by name: timelines are read in bulk).
ENTRY_COLUMNS = tuple(timeline.c[name] for name in _ENTRY_NAMES)
# Written, not read back: the check's collection date (see JobStore.last_entry).
_ENTRY_WRITE_NAMES = (*_ENTRY_NAMES, "collected_on")

QueuedEntry = tuple[TimelineEntry, date | None]
"""An entry as written: with the collection date of its check (None: not known)."""


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=True)`` without its per-call set-up: every call
    builds a new C encoder, which costs more than encoding a small dict does."""
    plain = json.JSONEncoder(sort_keys=True, check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (not CPython)
        return plain.encode
    # (markers, default, encode_str, indent, key_sep, item_sep, sort_keys, skipkeys,
    # allow_nan): the arguments JSONEncoder.iterencode passes for these settings.
    chunks = make(
        None, plain.default, json.encoder.encode_basestring_ascii, None, ": ", ", ",
        True, False, True,
    )  # fmt: skip
    return lambda value: "".join(chunks(value, 0))


to_json = _json_encoder()
# json.loads also skips whitespace around the value (there is none in what we wrote).
_from_json = json.JSONDecoder().raw_decode


def _entry_row(e: TimelineEntry, collected_on: date | None) -> tuple[Any, ...]:
    """An entry's columns in :data:`_ENTRY_WRITE_NAMES` order."""
    return (
        e.job_id,
        e.as_of,
        e.checked_at,
        e.data_month,
        to_json(_plain(e.metrics)),
        to_json([[c.metric, c.old, c.new, c.significant] for c in e.changes])
        if e.changes
        else "[]",
        e.significant,
        e.note,
        to_json(list(e.warnings)) if e.warnings else None,  # NULL: the usual check
        collected_on,
    )


def _plain(metrics: Mapping[str, float]) -> dict[str, float]:
    """A dict copy of a model's metrics for the JSON encoder. They are a read-only view
    of a dict, whose ``copy()`` copies the dict in C: a sixth of ``dict(view)``, which
    goes key by key through the mapping protocol."""
    return metrics.copy() if isinstance(metrics, MappingProxyType) else dict(metrics)


def entries_from_columns(columns: Sequence[Iterable[Any]]) -> list[TimelineEntry]:
    """Entries from their rows' columns (in :data:`_ENTRY_NAMES` order). Their metrics
    are decoded in one call: for a small dict, a decode's own set-up costs more than
    the dict."""
    (job_ids, as_ofs, checked_ats, data_months, metrics, changes, significants, notes,
     warnings) = columns  # fmt: skip
    ids, texts = list(job_ids), list(metrics)
    decoded = _from_json(f"[{', '.join(texts)}]")[0]
    if len(decoded) != len(texts):
        where = f"job {ids[0]}" if ids[0] == ids[-1] else f"jobs {ids[0]} to {ids[-1]}"
        raise StorageError("read", f"timeline metrics of {where} are not JSON objects")
    return list(
        map(
            TimelineEntry.from_stored,
            ids,
            as_ofs,
            checked_ats,
            data_months,
            decoded,
            map(_stored_changes, changes),
            significants,
            notes,
            _stored_warnings(warnings),
        )
    )


JOB_ID = operator.attrgetter("job_id")


def _stored_warnings(column: Iterable[str | None]) -> Iterable[tuple[str, ...]]:
    """The warnings of a column of rows: nothing per row when none has any (the usual
    timeline: ``any`` runs in C over the NULLs)."""
    texts = list(column)
    if not any(texts):
        return itertools.repeat(())
    return [warnings_from_text(t) if t else () for t in texts]


def warnings_from_text(text: str) -> tuple[str, ...]:
    """An entry's stored warnings (a JSON list of strings)."""
    return tuple(_from_json(text)[0])


def _stored_changes(text: str) -> tuple[MetricChange, ...]:
    return () if text == "[]" else _changes(text)  # most entries: no change


def _changes(text: str) -> tuple[MetricChange, ...]:
    return tuple(MetricChange(m, o, n, s) for m, o, n, s in _from_json(text)[0])


def month_end_row(s: Snapshot, job_id: int, now: datetime) -> dict[str, Any]:
    return {
        "district": s.district,
        "month": s.data_month,
        "as_of": s.as_of,
        "metrics": to_json(_plain(s.metrics)),
        "job_id": job_id,
        "updated_at": now,
    }


def update_jobs(conn: Connection, changed: Sequence[Job]) -> None:
    """Write jobs' progress columns in one executemany."""
    _UPDATE_JOBS.execute(conn, map(_job_progress_row, changed))
    changes.note(conn, job_ids=[j.id for j in changed], months={j.month for j in changed})


def upsert_entries(conn: Connection, entries: Iterable[QueuedEntry]) -> None:
    """Not noted in the ``changes`` table: every entry is written with its job's new
    counters (``save_progress``), in the same transaction (optimized) or the next one
    (naive), and the job's note drops its timeline too. A change row of its own would
    cost a naive check a fifth of its speed."""
    _UPSERT_ENTRIES.execute(conn, itertools.starmap(_entry_row, entries))


def upsert_month_end(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Replace a month-end snapshot only with strictly newer data of the same month."""
    conn.execute(_month_end_upsert(conn.dialect.name), rows)
    changes.note(conn, months={r["month"] for r in rows})


def _entries_upsert(dialect: str) -> Any:
    stmt = dialect_insert(dialect, timeline).values({n: bindparam(n) for n in _ENTRY_WRITE_NAMES})
    cols = _ENTRY_WRITE_NAMES[2:]  # all but the key (job_id, as_of)
    return stmt.on_conflict_do_update(
        index_elements=["job_id", "as_of"], set_={c: stmt.excluded[c] for c in cols}
    )


_UPSERT_ENTRIES = Prepared(_entries_upsert, _ENTRY_WRITE_NAMES)
_UPDATE_JOBS = Prepared(
    lambda _: (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values({c: bindparam(c) for c in _JOB_PROGRESS_COLUMNS})
    ),
    (*_JOB_PROGRESS_COLUMNS, "job_id"),
)


# Built once per dialect: building an upsert (its ``excluded`` alias) costs more than
# running it, and it runs at every flush.
@functools.cache
def _month_end_upsert(dialect: str) -> Any:
    stmt = dialect_insert(dialect, month_end_snapshots)
    cols = ("as_of", "metrics", "job_id", "updated_at")
    return stmt.on_conflict_do_update(
        index_elements=["district", "month"],
        set_={c: stmt.excluded[c] for c in cols},
        where=stmt.excluded.as_of > month_end_snapshots.c.as_of,
    )


def overlay(
    stored: tuple[TimelineEntry, ...], queued: list[TimelineEntry] | None
) -> tuple[TimelineEntry, ...]:
    """A stored timeline with queued entries on top (the newer entry of an as-of wins)."""
    if not queued:
        return stored
    merged = {e.as_of: e for e in stored}
    merged.update({e.as_of: e for e in queued})
    return tuple(merged[k] for k in sorted(merged))


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
