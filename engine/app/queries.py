"""Read models: what the dashboard, the CLI or the API show, as plain rows.

Each function takes the :class:`~engine.app.console.Console` and returns
dataclasses, dicts and lists of JSON-like values, computed here so that the
pages only lay them out. Nothing here writes. Reads go through the console
(and its cache) where the console offers them, else through storage in bulk.
Changes (start, cancel, clear, apply a setting) are in :mod:`engine.app.actions`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.app.months import (
    MonthStatus,
    latest_ended_month,
    live_progress,
    month_batch,
    status_of,
)
from engine.app.watcher import WATCHER_LEASE
from engine.batch.runner import FINISHED, BatchInfo, BatchProgress, ItemRecord
from engine.bench import TARGETS, judged
from engine.bench.e2e import STEP_LABELS
from engine.cache import LAYERS
from engine.cache.tuning import Replay, simulate
from engine.domain.models import (
    ALL_METRICS,
    BatchStatus,
    ItemState,
    Job,
    JobStatus,
    Phase,
    TimelineEntry,
    month_end,
    month_of,
    validate_month,
)
from engine.domain.rules import window_days
from engine.errors import ConfigError, NotFoundError
from engine.instrument import origin_of
from engine.monitor.advice import INFORMATIONAL, SEVERITY_ORDER, Bottleneck, Recommendation
from engine.monitor.core import Source
from engine.monitor.stats import OperationStats
from engine.readtrace import WORK, ReadTrace
from engine.settings import LiveSettings, Loaded, Settings, describe
from engine.sources.base import ExportSource
from engine.store.bench import BenchStore
from engine.store.events import CLOSE_KINDS, Event, EventKind
from engine.store.leases import SqlLeases
from engine.store.urls import safe_url
from engine.store.watcher import SqlWatcherStatus, WatcherStatus
from engine.store.workers import SqlWorkerStore

if TYPE_CHECKING:
    from engine.app.console import Console

MONTHS_BACK = 24  # calendar months offered besides the months that have runs
TIMELINE_METRICS = ("membership", "paid_clubs", "total_distinguished_clubs", "total_payments")
CHANGE_KINDS = ("first snapshot", "no change", "minor", "significant")
MAX_POINTS = 400  # points per series sent to a chart; longer series are averaged in buckets

# --- months --------------------------------------------------------------------------------


def months(console: Console) -> list[str]:
    """Months to pick from, newest first: those that have ended by the console's clock
    (a later month cannot be reconciled yet), with runs or among the last calendar months."""
    ended = latest_ended_month(console.today())
    with_runs = {r["month"] for r in console.storage.runs() if r["month"] <= ended}
    recent = {ended}
    month = ended
    for _ in range(MONTHS_BACK - 1):
        month = _previous_month(month)
        recent.add(month)
    return sorted(with_runs | recent, reverse=True)


def default_month(console: Console) -> str:
    """The latest month that has ended and has jobs, else the latest month that has ended."""
    ended = latest_ended_month(console.today())
    with_runs = [r["month"] for r in console.storage.runs() if r["month"] <= ended]
    return max(with_runs, default=ended)


def _previous_month(month: str) -> str:
    return month_of(date(int(month[:4]), int(month[5:7]), 1) - timedelta(days=1))


# --- close progress ------------------------------------------------------------------------


DISTRICT_STATES = (
    JobStatus.PENDING.value,
    *(phase.value for phase in Phase),
    JobStatus.COMPLETED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
)
"""The states a district is shown in, each district in exactly one: not checked yet,
one of the phases of an active job, or how it stopped."""
ATTENTION_ORDER = (
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
    Phase.FINALIZING.value,
    Phase.STABILIZING.value,
    Phase.MONITORING.value,
    JobStatus.PENDING.value,
    JobStatus.COMPLETED.value,
)
"""The order districts are listed in: what needs a person first, final ones last."""


def district_state(job: Job) -> str:
    """``job``'s one entry of :data:`DISTRICT_STATES` (a phase only while it is active)."""
    if job.status is JobStatus.ACTIVE:
        return job.phase.value if job.phase else "monitoring"
    return job.status.value


@dataclass(frozen=True)
class CloseView:
    """A month's close: KPIs, state counts and one progress row per district."""

    month: str
    status: MonthStatus
    total: int
    counts: dict[str, int]
    """Districts by state, every one of :data:`DISTRICT_STATES` (zeros too); they add
    up to ``total``."""
    by_reason: dict[str, int]
    percent_finalized: float
    """Completed districts (final figures) out of all; failed or cancelled ones are not."""
    days_since_month_end: int | None
    """By the console's clock, while the month is live (None once every district stopped)."""
    projected_close: date | None
    final_as_of: date | None
    """The newest as-of date among the districts' final figures."""
    districts: list[dict[str, Any]]
    """One row per district, ordered by :data:`ATTENTION_ORDER`, then by district."""
    running_batch: int | None
    """The batch working this month in this process, if one runs."""
    worked_elsewhere: str | None = None
    """Who works the month in another process (host, pid, since when), if one does while
    no batch of this process runs it: a `recon run`, a worker's watcher, a dashboard."""

    @property
    def finished(self) -> bool:
        """Every district of the latest run completed (none failed or cancelled)."""
        return self.status is MonthStatus.CLOSED

    @property
    def live(self) -> bool:
        """Whether the figures may still change (see :class:`MonthStatus`)."""
        return self.status.live

    @property
    def unfinished(self) -> int:
        """Districts without final figures that a new run of the month would redo."""
        return self.counts["failed"] + self.counts["cancelled"]


def close_view(console: Console, month: str) -> CloseView:
    month = validate_month(month)
    progress = console.month_progress(month)
    batch_id = month_batch(console, month)
    jobs = console.jobs(month)
    rows = sorted((_district_row(console, job) for job in jobs), key=_by_state)
    counts = dict.fromkeys(DISTRICT_STATES, 0)
    for row in rows:
        counts[row["state"]] += 1
    status = status_of(progress, batch_id)
    held = console.leases.held_by(month) if batch_id is None and status.live else None
    return CloseView(
        month=month,
        status=status,
        total=progress.total,
        counts=counts,
        by_reason=dict(progress.by_reason),
        percent_finalized=progress.percent_finalized,  # completed districts only
        days_since_month_end=((console.today() - month_end(month)).days if status.live else None),
        projected_close=progress.projected_close if status.live else None,
        final_as_of=max((j.final_as_of for j in jobs if j.final_as_of), default=None),
        districts=rows,
        running_batch=batch_id,
        worked_elsewhere=held.describe() if held and held.holder != console.leases.holder else None,
    )


@dataclass(frozen=True)
class WatcherView:
    """The database's watcher (``recon watch`` or a dashboard's embedded one), if one runs."""

    running: bool
    """A watcher holds the lease now."""
    source: str | None
    host: str | None
    pid: int | None
    started_at: datetime | None
    last_tick_at: datetime | None
    next_tick_at: datetime | None
    ticks: int
    open_jobs: int
    """Open jobs after the last tick."""
    last_error: str | None
    """The last tick's error, if it had one."""

    @property
    def summary(self) -> str:
        """One line: where it runs and when it ticks, or how to start one."""
        if not self.running:
            last = f" (the last one ticked at {_when(self.last_tick_at)})" if self.ticks else ""
            return f"no watcher: start one with `recon watch`{last}"
        return (
            f"watcher on {self.host} pid {self.pid}, source {self.source}: "
            f"last tick {_when(self.last_tick_at)}, next tick {_when(self.next_tick_at)}"
        )


def _when(at: datetime | None) -> str:
    return "–" if at is None else f"{at:%Y-%m-%d %H:%M:%S} UTC"


def watcher_view(console: Console) -> WatcherView:
    """Whether a watcher runs on this database (its lease), and what it last did."""
    lease = SqlLeases(console.storage, clock=console.clock).holder(WATCHER_LEASE)
    status = SqlWatcherStatus(console.storage).load(WATCHER_LEASE)
    mine = status is not None and lease is not None and status.holder == lease.holder.id
    # The workers' periodic ticks hold the lease only while they tick: between ticks
    # the watcher runs while a worker is alive and the next tick is due.
    mine = mine or (lease is None and _scheduled(console, status))
    host, pid = (lease.holder.host, lease.holder.pid) if lease else (None, None)
    if mine and lease is None and status is not None:
        host, pid = status.host, status.pid  # the worker that ticked last
    return WatcherView(
        running=mine or lease is not None,
        source=status.source if mine and status else None,
        host=host,
        pid=pid,
        started_at=status.started_at if mine and status else None,
        last_tick_at=status.last_tick_at if status else None,
        next_tick_at=status.next_tick_at if mine and status else None,
        ticks=status.ticks if status else 0,
        open_jobs=status.open_jobs if status else 0,
        last_error=status.last_error if status else None,
    )


_PERIODIC_SLACK = timedelta(minutes=1)  # a tick waits for a free worker: it may start late


def _scheduled(console: Console, status: WatcherStatus | None) -> bool:
    """A periodic watcher (``recon worker --watch``): a worker is alive to run the
    next tick, which is due."""
    if status is None or status.period_s is None or status.next_tick_at is None:
        return False
    slack = max(_PERIODIC_SLACK, timedelta(seconds=status.period_s))
    if console.clock.now() > status.next_tick_at + slack:
        return False
    return any(w.state == "alive" for w in workers_view(console))


def _by_state(row: Mapping[str, Any]) -> tuple[int, bool, int, str]:
    """Attention order, then districts as people count them: 2 before 10, numbers before F."""
    district = row["district"]
    number = int(district) if district.isdigit() else 0
    return ATTENTION_ORDER.index(row["state"]), not district.isdigit(), number, district


def _district_row(console: Console, job: Job) -> dict[str, Any]:
    settings = console.settings.recon
    progress = console.reconciler.job_progress(job)
    window = window_days(job.month, settings) + job.extension_days
    required = settings.stability_period_days
    completed = job.status is JobStatus.COMPLETED
    return {
        "district": job.district,
        "job_id": job.id,
        "state": district_state(job),
        "status": job.status.value,
        # A completed district needs no more stable days, whatever ended it.
        "stable_days": required if completed else min(job.stable_days, required),
        "stable_required": required,
        "window_days": window,
        "window_left": None if job.status.finished else progress.days_left,
        "window": _window_text(job, progress.days_left),
        "reason": job.reason.value if job.reason else None,
        "outcome": (job.reason.value if job.reason else None) or job.error,
        "final_as_of": job.final_as_of,
        "eta": None if job.status.finished else progress.eta,
        "checks": job.checks,
        "significant_changes": job.significant_changes,
        "error": job.error,
    }


@dataclass(frozen=True)
class DistrictWarnings:
    """What the exports of one district's checks warned of (e.g. an unknown
    distinguished code, kept and counted), each naming the file and the code."""

    district: str
    warnings: tuple[str, ...]
    """Distinct warnings, in as-of order (each day's file is its own warning)."""

    @property
    def summary(self) -> str:
        """One line: the district, its latest warning, and how many came before."""
        earlier = len(self.warnings) - 1
        more = f" (and {earlier} earlier warning{'s' if earlier > 1 else ''})" if earlier else ""
        return f"district {self.district}: {self.warnings[-1]}{more}"


def month_warnings(console: Console, month: str) -> list[DistrictWarnings]:
    """The districts of the month's latest run whose checked exports had warnings,
    in the run's district order (one read of only the entries with warnings)."""
    jobs = console.jobs(validate_month(month))
    warned = console.storage.timeline_warnings([j.id for j in jobs])
    return [
        DistrictWarnings(j.district, tuple(dict.fromkeys(warned[j.id])))
        for j in jobs
        if j.id in warned
    ]


def _window_text(job: Job, days_left: int) -> str:
    """The closing window left, as a reader wants it: days while open, else why not."""
    if job.status is JobStatus.COMPLETED:
        return "final"
    if job.status.finished:
        return "–"
    return f"{days_left} day{'s' if days_left != 1 else ''}"


FINAL_COLUMNS = ("district", "status", "reason", "final_as_of")
"""The first columns of :func:`final_figures`; every metric follows."""


@dataclass(frozen=True)
class FinalFigures:
    """A month's final figures: one row per district of its latest run."""

    month: str
    columns: tuple[str, ...]
    """:data:`FINAL_COLUMNS`, then the metrics: those of the timeline in their
    order, then any other a source gave, by name."""
    rows: list[dict[str, Any]]
    """One per district; a district without final figures has empty metrics."""


def final_figures(console: Console, month: str) -> FinalFigures:
    """What finance takes away: status, reason, final as-of and every final metric.

    Raises NotFoundError for a month without jobs.
    """
    jobs = console.jobs(validate_month(month))
    if not jobs:
        raise NotFoundError("month", month, "no jobs yet: start a month-end run first")
    finals = {j.id: final_metrics(console, j) or {} for j in jobs}
    extra = sorted({m for metrics in finals.values() for m in metrics} - set(ALL_METRICS))
    columns = (*FINAL_COLUMNS, *ALL_METRICS, *extra)
    rows = [
        {
            "district": j.district,
            "status": j.status.value,
            "reason": j.reason.value if j.reason else None,
            "final_as_of": j.final_as_of,
            **{m: finals[j.id].get(m) for m in (*ALL_METRICS, *extra)},
        }
        for j in jobs
    ]
    return FinalFigures(month, columns, rows)


def final_csv(console: Console, month: str) -> str:
    """:func:`final_figures` as CSV text: what ``recon export``, the dashboard's download
    and ``GET /api/reconciliation/months/{month}/final.csv`` give."""
    figures = final_figures(console, month)
    out = io.StringIO()
    writer = csv.DictWriter(out, figures.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in figures.rows)
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return int(value)  # counts read as 1234, not 1234.0
    return value


@dataclass(frozen=True)
class ChangeMatrix:
    """District x as-of day: how each district's month figures moved on each day checked."""

    districts: list[str]
    """Districts checked at least once, ordered as :data:`ATTENTION_ORDER`, then by district."""
    states: list[str]
    """Each district's state, same order."""
    unchecked: list[str]
    """Districts not checked yet (no row: nothing to show)."""
    days: list[date]
    kinds: list[list[str | None]]
    """``kinds[d][i]``: one of :data:`CHANGE_KINDS` for district ``d`` on day ``i``, or None."""
    details: list[list[str]]
    """What changed significantly, same shape (empty when nothing did)."""

    def page(self, number: int, size: int) -> ChangeMatrix:
        """Rows ``number * size`` up to the next ``size`` (every day kept)."""
        rows = slice(number * size, (number + 1) * size)
        return ChangeMatrix(
            self.districts[rows],
            self.states[rows],
            self.unchecked,
            self.days,
            self.kinds[rows],
            self.details[rows],
        )


def change_matrix(console: Console, month: str) -> ChangeMatrix:
    """The heatmap of :func:`close_view`. Days after the closing period (data of a
    later month) are left out."""
    jobs = {j.id: j for j in console.jobs(validate_month(month))}
    cells: dict[tuple[str, date], tuple[str, str]] = {}
    for job_id, entries in console.storage.timelines(list(jobs)).items():
        for entry in entries:
            if entry.data_month in (None, month):
                cells[(jobs[job_id].district, entry.as_of)] = _change_kind(entry)
    checked = {district for district, _ in cells}
    rows = sorted(
        ({"district": j.district, "state": district_state(j)} for j in jobs.values()),
        key=_by_state,
    )
    districts = [r["district"] for r in rows if r["district"] in checked]
    days = sorted({day for _, day in cells})
    grid = [[cells.get((d, day)) for day in days] for d in districts]
    return ChangeMatrix(
        districts,
        [r["state"] for r in rows if r["district"] in checked],
        [r["district"] for r in rows if r["district"] not in checked],
        days,
        [[c[0] if c else None for c in row] for row in grid],
        [[c[1] if c else "" for c in row] for row in grid],
    )


def _change_kind(entry: TimelineEntry) -> tuple[str, str]:
    significant = [c.metric for c in entry.changes if c.significant]
    if entry.note == "first snapshot":
        kind = CHANGE_KINDS[0]
    elif significant:
        kind = CHANGE_KINDS[3]
    else:
        kind = CHANGE_KINDS[2] if entry.changes else CHANGE_KINDS[1]
    return kind, ", ".join(significant)


@dataclass(frozen=True)
class TimelineView:
    """One district's timeline: metric values by as-of date, and the entries themselves."""

    job: Job
    series: dict[str, list[dict[str, Any]]]
    """Per metric: ``as_of, value, significant`` (this metric's change was significant)."""
    entries: list[dict[str, Any]]
    """One row per entry: as-of, check time, data month, significant, changes, note."""
    significant_days: list[date]
    """As-of dates with a significant change of any metric."""
    telling_metrics: list[str]
    """Metrics worth charting first: those that changed significantly most often, then
    :data:`TIMELINE_METRICS`."""


def timeline_view(console: Console, job_id: int) -> TimelineView:
    entries = console.timeline(job_id)
    series: dict[str, list[dict[str, Any]]] = {
        m: [
            {
                "as_of": e.as_of,
                "value": e.metrics[m],
                "significant": any(c.metric == m and c.significant for c in e.changes),
            }
            for e in entries
            if m in e.metrics
        ]
        for m in ALL_METRICS
    }
    counts = {m: sum(p["significant"] for p in points) for m, points in series.items()}
    moving = sorted((m for m in ALL_METRICS if counts[m]), key=lambda m: -counts[m])
    telling = list(dict.fromkeys([*moving, *TIMELINE_METRICS]))
    return TimelineView(
        job=console.job(job_id),
        series=series,
        entries=[_entry_row(e) for e in entries],
        significant_days=[e.as_of for e in entries if e.significant],
        telling_metrics=telling,
    )


def _entry_row(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "as_of": entry.as_of,
        "checked_at": entry.checked_at,
        "data_month": entry.data_month,
        "significant": entry.significant,
        "changes": "; ".join(_change_text(c.metric, c.old, c.new, c.pct) for c in entry.changes),
        "note": entry.note,
    }


def _change_text(metric: str, old: float, new: float, pct: float | None) -> str:
    relative = f" ({pct:+.1f} %)" if pct is not None else ""
    return f"{metric} {_num(old)} → {_num(new)}{relative}"


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


# --- batches -------------------------------------------------------------------------------


def batch_history(console: Console, limit: int = 50) -> list[dict[str, Any]]:
    """The latest batches, newest first, with their item counts."""
    return [_batch_row(info) for info in console.batch.list_batches(limit=limit)]


DONE = frozenset({ItemState.SUCCEEDED, ItemState.FAILED, ItemState.SKIPPED})
"""Items that ran to an end; cancelled items are finished but not done."""
_SHOWN_COUNTS = (ItemState.SUCCEEDED, ItemState.FAILED, ItemState.SKIPPED, ItemState.CANCELLED)


def _batch_row(info: BatchInfo) -> dict[str, Any]:
    counts = info.counts
    finished = sum(n for state, n in counts.items() if state in FINISHED)
    done = sum(n for state, n in counts.items() if state in DONE)
    return {
        "batch": info.batch_id,
        "name": info.name,
        "status": info.status,
        "created_at": info.created_at,
        "finished_at": info.finished_at,
        "total": info.total,
        **{state.value: counts.get(state, 0) for state in _SHOWN_COUNTS},
        "done": done,
        "unfinished": info.total - finished,
        "percent": 100.0 * done / info.total if info.total else 0.0,
        "concurrency": info.config.get("max_concurrent_jobs"),
        "throttled_s": info.throttled_s,
    }


@dataclass(frozen=True)
class WorkerView:
    """A ``recon worker`` of the procrastinate runner, as its heartbeat last said."""

    id: int
    host: str
    pid: int
    concurrency: int
    """Items it runs at once."""
    state: str
    """``alive``, or ``lost``: no heartbeat for longer than ``batch.stallTimeoutS``
    (its items are run again by the other workers)."""
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    """Seconds since its last heartbeat."""
    running: tuple[str, ...]
    """The items it runs, ``batch/item``."""
    done: int
    """Items it finished since it started."""


def workers_view(console: Console) -> list[WorkerView]:
    """Every worker with a row, oldest first; lost ones marked (any runner: empty
    when no worker ever ran on this database)."""
    now = console.clock.now()
    stall = console.settings.batch.stall_timeout_s
    return [
        WorkerView(
            id=w.id,
            host=w.host,
            pid=w.pid,
            concurrency=w.concurrency,
            state="lost" if w.lost(now, stall) else "alive",
            started_at=w.started_at,
            heartbeat_at=w.heartbeat_at,
            heartbeat_age_s=max(0.0, (now - w.heartbeat_at).total_seconds()),
            running=tuple(f"{b}/{i}" for b, i in w.running),
            done=w.done,
        )  # fmt: skip
        for w in SqlWorkerStore(console.storage).list()
    ]


def workers_rows(console: Console) -> list[dict[str, Any]]:
    """:func:`workers_view` as table rows (times as text)."""
    rows = []
    for w in workers_view(console):
        row = dataclasses.asdict(w)
        row["started_at"], row["heartbeat_at"] = _when(w.started_at), _when(w.heartbeat_at)
        row["running"] = list(w.running)
        rows.append(row)
    return rows


def last_start(console: Console) -> dict[str, Any] | None:
    """The newest batch record (whichever tab or process started it), with its settings
    (``config``, field names), or None before the first batch."""
    newest = console.batch.list_batches(limit=1)
    if not newest:
        return None
    return {**_batch_row(newest[0]), "config": dict(newest[0].config)}


@dataclass(frozen=True)
class BatchView:
    """One batch: its row, live progress (this process's batches), items and throughput."""

    info: dict[str, Any]
    progress: BatchProgress | None
    items: list[dict[str, Any]]
    throughput: list[dict[str, Any]]
    """``at, width_s, items_per_s``: items done per second, in up to 30 time buckets
    (``at`` is a bucket's middle; cancelled items left out)."""
    rate: float | None
    """Items done per second while items ran (idle and cancelled time left out); None
    before the first item is done."""

    @property
    def done(self) -> int:
        """Items that ran to an end (succeeded, failed or skipped): cancelled ones are not."""
        p = self.progress
        return p.succeeded + p.failed + p.skipped if p is not None else int(self.info["done"])

    @property
    def cancelled(self) -> int:
        p = self.progress
        return p.cancelled if p is not None else int(self.info["cancelled"])

    @property
    def percent(self) -> float:
        """Done items over all items."""
        total = int(self.info["total"])
        return 100.0 * self.done / total if total else 0.0

    @property
    def live(self) -> bool:
        """Still running in this process."""
        return self.progress is not None and not self.progress.done

    @property
    def running(self) -> bool:
        """Still running, in this process or another (it can be cancelled from here)."""
        return self.live or self.info["status"] == BatchStatus.RUNNING


def batch_view(console: Console, batch_id: int) -> BatchView:
    progress = live_progress(console.batch, batch_id)
    detail = console.batch.batch_detail(batch_id)
    ran = [i for i in detail.items if i.status in DONE and i.finished_at is not None]
    return BatchView(
        info=_batch_row(detail.info),
        progress=progress,
        items=[_item_row(i) for i in detail.items],
        throughput=_throughput(
            detail.info.created_at, [i.finished_at for i in ran if i.finished_at]
        ),
        rate=_busy_rate(ran),
    )


def _busy_rate(ran: Sequence[ItemRecord]) -> float | None:
    """Items done per second of the time at least one attempt ran."""
    spans = sorted((a.started_at, a.ended_at) for i in ran for a in i.attempts)
    busy, end = 0.0, None
    for start, stop in spans:
        if end is None or start > end:
            busy += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            busy += (stop - end).total_seconds()
            end = stop
    return len(ran) / busy if ran and busy > 0 else None


def _item_row(item: ItemRecord) -> dict[str, Any]:
    last = item.attempts[-1] if item.attempts else None
    result = item.result if isinstance(item.result, Mapping) else {}
    return {
        "item": item.item_id,
        "district": item.spec.get("district"),
        "month": item.spec.get("month"),
        "status": item.status,
        "attempts": len(item.attempts),
        "last_outcome": last.outcome if last else None,
        "outcome": result.get("reason") or result.get("status"),
        "error": item.error or (last.error if last else None),
        "finished_at": item.finished_at,
        "priority": item.priority,
    }


def _throughput(start: datetime, finished: Iterable[datetime], buckets: int = 30) -> list[Any]:
    times = sorted(finished)
    if not times:
        return []
    width = max(1.0, (times[-1] - start).total_seconds() / buckets)
    counts: dict[int, int] = {}
    for t in times:
        n = int(max(0.0, (t - start).total_seconds()) // width)
        counts[n] = counts.get(n, 0) + 1
    last = max(counts)
    # ``at`` is the bucket's middle and ``width_s`` its span, so that a bar covers the
    # seconds its items finished in (a bar at the bucket's end read as one second late)
    return [
        {
            "at": start + timedelta(seconds=(n + 0.5) * width),
            "width_s": width,
            "items_per_s": counts.get(n, 0) / width,
        }
        for n in range(last + 1)
    ]


# --- cache ---------------------------------------------------------------------------------

CACHE_COLUMNS = (
    "hit_rate",
    "hits",
    "misses",
    "size",
    "max_size",
    "evictions",
    "expirations",
    "prefetches",
    "prefetch_hits",
    "hit_mean_us",
    "hit_p95_us",
    "miss_mean_us",
    "miss_p95_us",
)


def cache_rows(console: Console) -> list[dict[str, Any]]:
    """One row per cache layer, then the total, columns in display order."""
    stats = console.cache.stats()
    parts = [*((name, stats.layers[name]) for name in LAYERS), ("total", stats.total)]
    return [{"layer": name, **{k: getattr(s, k) for k in CACHE_COLUMNS}} for name, s in parts]


def _rate(hits: int, misses: int) -> float | None:
    """Hits over reads, None before the first read: the one definition of a hit rate."""
    return hits / (hits + misses) if hits + misses else None


def cache_reads(console: Console) -> tuple[int, int]:
    """The read cache's hits and misses since the start, over every layer."""
    total = console.cache.stats().total
    return total.hits, total.misses


def cache_hit_rate(console: Console) -> float | None:
    """The read cache's hit rate since the start (every layer): the figure the Cache and
    Performance pages both show, and the cache rule of :func:`advice` judges."""
    return _rate(*cache_reads(console))


def all_caches(console: Console) -> list[dict[str, Any]]:
    """Every cache of this process: ``cache, serves, hits, misses, hit_rate, size, limit``.

    The read cache's layers (the dashboard's, API's and CLI's reads), the storage
    cache (the engine's job reads) and the source's day-summary cache and row memo
    (the month-end checks; optimized mode only).
    """
    stats = console.cache.stats().layers
    rows = [
        _cache_row(f"read cache: {name}", "dashboard, API and CLI reads",
                   stats[name].hits, stats[name].misses, stats[name].size, stats[name].max_size)
        for name in LAYERS
    ]  # fmt: skip
    storage = console.storage.cache_stats()
    rows.append(
        _cache_row("storage cache", "the engine's job reads", storage.hits, storage.misses,
                   storage.size + storage.index_size, storage.cache_max_size)
    )  # fmt: skip
    source = console.source
    found = source.cache_stats() if isinstance(source, ExportSource) else {}
    for name, c in found.items():
        rows.append(_cache_row(name, "month-end checks", c.hits, c.misses, c.size, c.limit))
    return rows


def _cache_row(
    name: str, serves: str, hits: int, misses: int, size: int, limit: int
) -> dict[str, Any]:
    return {
        "cache": name,
        "serves": serves,
        "hits": hits,
        "misses": misses,
        "hit_rate": _rate(hits, misses),
        "size": size,
        "limit": limit,
    }


def cache_history(console: Console) -> list[dict[str, Any]]:
    """``time, layer, hit_rate, size`` per history sample (hit rate since the start)."""
    rows = []
    for point in console.cache.history():
        for layer, s in {**point.layers, "total": point.total}.items():
            rows.append(
                {"time": point.time, "layer": layer, "hit_rate": s.hit_rate, "size": s.size}
            )
    return rows


MIN_TRACE_READS = 300  # fewer recorded reads than this draw no what-if curve
WHAT_IF_POINTS = 8  # sizes replayed when none are typed: evenly spaced up to the keys seen
ORIGIN_CHOICES = ("every origin", WORK, "dashboard", "api", "viewers")


def traced_caches(console: Console) -> dict[str, ReadTrace]:
    """Every cache whose reads are recorded, by the names :func:`all_caches` shows."""
    found = {f"read cache: {name}": console.cache.trace(name) for name in LAYERS}
    found["storage cache"] = console.storage.cache_trace()
    if isinstance(console.source, ExportSource):
        found.update(console.source.cache_traces())
    return found


@dataclass(frozen=True)
class WhatIf:
    """A recorded trace of one cache replayed through LRU + TTL caches of other sizes."""

    cache: str
    origin: str | None
    """Whose reads were replayed (None: every origin's)."""
    reads: int
    """Reads in the replayed trace."""
    keys: int
    """Distinct keys read."""
    origins: dict[str, int]
    """Reads per origin in the trace."""
    rows: list[Replay]
    """One per replayed size and TTL."""
    refused: str | None
    """Why no curve is drawn (too few reads), or None."""


def what_if(
    console: Console, cache: str, *, origin: str | None = None, sizes: str = "",
    ttls: str = "60000, 300000",
) -> WhatIf:  # fmt: skip
    """Replay ``cache``'s recorded trace (of ``origin``'s reads, default all) through
    LRU caches with each size and TTL (ms), typed as comma-separated whole numbers;
    no sizes: :data:`WHAT_IF_POINTS` evenly spaced up to the distinct keys read.
    Fewer than :data:`MIN_TRACE_READS` reads are refused (``refused`` says why)."""
    traces = traced_caches(console)
    if cache not in traces:
        raise ConfigError("cache", cache, f"no such cache; expected one of {', '.join(traces)}")
    origin = None if origin in (None, "", ORIGIN_CHOICES[0]) else origin
    events = traces[cache].events(origin)
    read_keys = [key for op, key, _ in events if op == "g"]
    keys = len(set(read_keys))
    ttl_values = _whole_numbers("TTLs", ttls)
    size_values = _whole_numbers("sizes", sizes) if sizes.strip() else _even_sizes(keys)
    view = WhatIf(cache, origin, len(read_keys), keys, traces[cache].origins(), [], None)
    if len(read_keys) < MIN_TRACE_READS:
        whose = f"{origin} reads" if origin else "reads"
        return dataclasses.replace(view, refused=(
            f"{cache} has {len(read_keys)} recorded {whose}; a curve needs at least "
            f"{MIN_TRACE_READS}. Run a batch (Batch runs page, or `recon run`) or the "
            "viewer load below, then replay."
        ))  # fmt: skip
    rows = simulate(events, size_values, ["LRU"], ttl_values)
    return dataclasses.replace(view, rows=rows)


def _even_sizes(keys: int) -> list[int]:
    return sorted({max(1, round(keys * k / WHAT_IF_POINTS)) for k in range(1, WHAT_IF_POINTS + 1)})


def _whole_numbers(name: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise ConfigError(name, text, "expected whole numbers separated by commas") from exc
    if not values or any(v <= 0 for v in values):
        raise ConfigError(name, text, "expected at least one positive whole number")
    return values


# --- performance ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationsView:
    """The monitor's figures per operation over a window, with the page's headline figures.

    The engine's work and a UI's own reads (see :func:`engine.instrument.reads_for`)
    are apart: the headline figures count the engine's only.
    """

    rows: list[dict[str, Any]]
    """One row per engine operation, slowest total first; ``errors`` as text."""
    calls: int
    failures: int
    slowest: str | None
    """The operation with the highest p95 (None without operations)."""
    slowest_p95_ms: float
    own_reads: list[dict[str, Any]]
    """The same figures for the reads made by the dashboard, API or CLI (``origin`` column)."""


def _engine_stats(console: Console, window_s: float) -> tuple[list[OperationStats], Source]:
    """The window's figures, and where from: this process's memory or the persisted
    history (every process's work, e.g. a CLI run beside the dashboard), whichever
    holds more of the engine's calls."""
    memory = console.monitor.stats(window_s, source="memory")
    try:
        history = console.monitor.stats(window_s, source="history")
    except ConfigError:  # a monitor without storage
        return memory, "memory"
    if _engine_calls(history) > _engine_calls(memory):
        return history, "history"
    return memory, "memory"


def _engine_calls(found: Sequence[OperationStats]) -> int:
    return sum(s.calls for s in found if origin_of(s.operation) is None)


def operations_view(console: Console, window_s: float) -> OperationsView:
    rows, own = [], []
    for s in _engine_stats(console, window_s)[0]:
        row = dataclasses.asdict(s)
        row["errors"] = ", ".join(f"{k}: {v}" for k, v in s.errors.items())
        origin = origin_of(s.operation)
        if origin is None:
            rows.append(row)
        else:
            own.append({**row, "origin": origin, "operation": s.operation[len(origin) + 1 :]})
    slowest = max(rows, key=lambda r: r["p95_ms"], default=None)
    return OperationsView(
        rows=rows,
        calls=sum(r["calls"] for r in rows),
        failures=sum(r["failures"] for r in rows),
        slowest=slowest["operation"] if slowest else None,
        slowest_p95_ms=slowest["p95_ms"] if slowest else 0.0,
        own_reads=own,
    )


@dataclass(frozen=True)
class AdviceItem:
    """One finding (a rule, over every operation it fired on) or recommendation, ready to show."""

    level: str
    """high, medium or low: the same on the bottleneck and its recommendation."""
    label: str
    """Severity or priority (and category), for a badge."""
    message: str
    """What was found (Markdown)."""
    detail: str
    """What to do (empty when the message says it all)."""
    rows: list[dict[str, Any]]
    """The operations the rule fired on, with the figures behind it (one row per operation)."""


@dataclass(frozen=True)
class Advice:
    bottlenecks: list[AdviceItem]
    """One card per rule that fires over the window, most severe first."""
    recommendations: list[AdviceItem]
    notes: list[AdviceItem]
    """Informational findings (e.g. rarely called operations): not bottlenecks."""


def advice(console: Console, window_s: float) -> Advice:
    """The monitor's bottlenecks and recommendations over the window (one analysis).

    The cache rule sees :func:`cache_hit_rate`, the figure the Cache page shows.
    """
    reads = cache_reads(console)
    source = _engine_stats(console, window_s)[1]
    cache = (_rate(*reads), sum(reads))
    report = console.monitor.report(window_s, source=source, cache=cache)
    found = report.bottlenecks
    return Advice(
        bottlenecks=_bottleneck_cards([b for b in found if b.rule not in INFORMATIONAL]),
        recommendations=[_recommendation_item(r) for r in report.recommendations],
        notes=_bottleneck_cards([b for b in found if b.rule in INFORMATIONAL]),
    )


def _bottleneck_cards(found: Sequence[Bottleneck]) -> list[AdviceItem]:
    """One card per rule: repeated findings of a rule become rows of one table."""
    by_rule: dict[str, list[Bottleneck]] = {}
    for b in found:
        by_rule.setdefault(b.rule, []).append(b)
    cards = [_bottleneck_card(rule, group) for rule, group in by_rule.items()]
    return sorted(cards, key=lambda c: SEVERITY_ORDER[c.level])


def _bottleneck_card(rule: str, group: list[Bottleneck]) -> AdviceItem:
    level = min((b.severity for b in group), key=SEVERITY_ORDER.__getitem__)
    first = group[0]
    if len(group) == 1:
        message = f"**{first.operation}** · `{rule}` — {first.message}"
    else:
        names = ", ".join(f"**{b.operation}**" for b in group)
        message = f"`{rule}` on {len(group)} operations: {names} (figures below)"
    rows = [
        {"operation": b.operation, "severity": b.severity, **_figures_of(b.values)}
        for b in sorted(group, key=lambda b: SEVERITY_ORDER[b.severity])
    ]
    return AdviceItem(level, level.upper(), message, first.recommendation, rows)


def _figures_of(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def _recommendation_item(found: Recommendation) -> AdviceItem:
    return AdviceItem(
        level=found.priority,
        label=f"{found.priority.upper()} · {found.category}",
        message=found.message,
        detail="",
        rows=[],
    )


def latency_series(console: Console, window_s: float, top: int = 6) -> list[dict[str, Any]]:
    """p95 over time of the engine's ``top`` operations by total time, from persisted
    history; a row with ``p95_ms`` None breaks each line where intervals are missing.

    A long window is averaged in the database into at most :data:`MAX_POINTS`
    points per operation (intervals grouped by row id, which grows with time).
    """
    operations = [r["operation"] for r in operations_view(console, window_s).rows[:top]]
    if not operations:
        return []
    points = console.monitor.latency_series(window_s, max_points=MAX_POINTS, operations=operations)
    gap = timedelta(seconds=2.5 * console.settings.monitor.aggregate_interval_s)
    rows = [{**dataclasses.asdict(p), "at": _naive(p.at)} for p in points]  # as the marks
    return _with_gaps(rows, gap)


def _with_gaps(rows: list[dict[str, Any]], gap: timedelta) -> list[dict[str, Any]]:
    """Rows of each operation in time order, with a None row where two are further apart
    than ``gap`` (a line chart then leaves the stretch without data blank)."""
    out: list[dict[str, Any]] = []
    by_op: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_op.setdefault(row["operation"], []).append(row)
    for op, points in by_op.items():
        points.sort(key=lambda r: r["at"])
        for before, after in zip([None, *points], points, strict=False):
            if before is not None and after["at"] - before["at"] > gap:
                out.append({"at": before["at"] + gap / 2, "operation": op, "p50_ms": None,
                            "p95_ms": None, "calls": 0})  # fmt: skip
            out.append(after)
    return out


def batch_marks(console: Console, window_s: float) -> list[dict[str, Any]]:
    """``at, label``: when batches started, were cancelled and finished within the window
    (from the batch records, so a batch of another process shows too)."""
    after = console.clock.now() - timedelta(seconds=window_s)
    marks = []
    for info in console.batch.list_batches(limit=50):
        if info.created_at >= after:
            marks.append({"at": _naive(info.created_at), "label": f"batch {info.batch_id} start"})
        if info.finished_at is not None and info.finished_at >= after:
            end = info.status if info.status is BatchStatus.CANCELLED else BatchStatus.FINISHED
            marks.append({"at": _naive(info.finished_at), "label": f"batch {info.batch_id} {end}"})
    return marks


def _naive(at: datetime) -> datetime:
    """UTC without a zone, as the history's points are (one time axis on a chart)."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def resource_series(console: Console, window_s: float) -> list[dict[str, Any]]:
    """CPU and memory samples over the window, per process (long series averaged)."""
    samples = console.monitor.resources(window_s).samples
    rows = [
        {
            "at": s.at,
            "process": s.process,
            "cpu_percent": s.values["cpu_percent"],
            "rss_mb": s.values["rss_mb"],
        }
        for s in samples
    ]
    return _thin(rows, "process", ("cpu_percent", "rss_mb"))


def _thin(rows: list[dict[str, Any]], key: str, values: Sequence[str]) -> list[dict[str, Any]]:
    """At most :data:`MAX_POINTS` rows per ``key``: neighbours averaged together."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    out = []
    for group in groups.values():
        step = -(-len(group) // MAX_POINTS)
        for i in range(0, len(group), step):
            chunk = group[i : i + step]
            merged = dict(chunk[-1])
            merged.update({v: sum(r[v] for r in chunk) / len(chunk) for v in values})
            out.append(merged)
    return out


# --- benchmarks ----------------------------------------------------------------------------

_DASHBOARD_SUITE = "e2e-dashboard"  # actions.COMPARISON_SUITE: the Before / after page's runs


def bench_history(console: Console, limit: int = 50) -> list[dict[str, Any]]:
    """Stored benchmark results (``recon bench`` and the dashboard), newest first.

    ``size`` is "quick" for a smoke-sized run (``recon bench --quick``, or a page run
    smaller than the full workload) and "full" otherwise: only full runs are judged
    against their targets and headline the Before / after page.
    """
    out = []
    for row in BenchStore(console.storage).recent(limit):
        result = row.result
        out.append(
            {
                "id": row.id,
                "created_at": row.created_at,
                "suite": row.suite,
                "quick": bool(row.quick),
                "size": "quick" if row.quick else "full",
                "figures": _figures(row.suite, result, judge=not row.quick),
                "result": result,
            }
        )
    return out


def _target_suite(suite: str) -> str:
    """The suite whose targets judge ``suite``'s figures (page runs are e2e runs)."""
    return "e2e" if suite == _DASHBOARD_SUITE else suite


def _figures(suite: str, result: Mapping[str, Any], *, judge: bool) -> str:
    """A result's numbers in one line, the fields with a target first and, for a full
    run, whether each met it (e.g. ``read_speedup 10.1 (>= 10: met)``)."""
    verdicts = {"yes": "met", "no": "missed"}
    return ", ".join(
        f"{r['field']} {r['value']}"
        + (f" ({r['target']}: {verdicts[r['met']]})" if r["met"] else "")
        for r in figures_table(suite, result, judge=judge)
    )


def figures_table(suite: str, result: Mapping[str, Any], *, judge: bool) -> list[dict[str, str]]:
    """A stored result's figures as rows (field, value, target, met), the fields with a
    target first; ``met`` is "yes"/"no" on a judged (full) run, else ""."""
    found = judged({_target_suite(suite): result}, judge=judge)
    found.sort(key=lambda row: not row[3])  # stable: stored order otherwise
    return [
        {"field": field, "value": value, "target": target, "met": met}
        for _, field, value, target, met in found
    ]


COMPARISON_MODES = ("naive", "optimized")
COMPARISON_CHARTS = (
    ("Time (s)", "{}_s"),
    ("Database round trips", "{}_db_roundtrips"),
    ("Peak memory (MB)", "{}_peak_rss_mb"),
)
"""Chart title and result-key template (one key per mode) of a before/after comparison.
Lower is better in each."""


@dataclass(frozen=True)
class ComparisonChart:
    title: str
    key: str
    """The result-key template, unique per chart."""
    values: tuple[float, ...] | None
    """One value per :data:`COMPARISON_MODES`; None when the result lacks some."""

    @property
    def better(self) -> tuple[bool, ...]:
        """Per mode, whether its value is the lowest (lower is better in every chart)."""
        if self.values is None:
            return ()
        return tuple(v == min(self.values) for v in self.values)


@dataclass(frozen=True)
class ComparisonStep:
    """One step of the e2e suite's way from naive to optimized."""

    step: str
    label: str
    seconds: float


@dataclass(frozen=True)
class ComparisonView:
    """A before/after result's headline figures, its charts and its steps."""

    speedup: float
    naive_s: float
    optimized_s: float
    checks: float
    charts: tuple[ComparisonChart, ...]
    steps: tuple[ComparisonStep, ...] = ()
    """Naive to optimized (empty for results stored before the steps existed)."""
    speedup_target: str = ""
    """e.g. ">= 10"."""
    speedup_met: bool = False


def comparison_view(result: Mapping[str, Any]) -> ComparisonView:
    """A comparison's result (a task's or a stored one) as figures, charts and steps."""
    charts = []
    for title, template in COMPARISON_CHARTS:
        keys = [template.format(mode) for mode in COMPARISON_MODES]
        found = all(result.get(key) is not None for key in keys)
        known = tuple(result[key] for key in keys) if found else None
        charts.append(ComparisonChart(title, template, known))
    steps = tuple(
        ComparisonStep(s["step"], STEP_LABELS.get(s["step"], s["step"]), s["seconds"])
        for s in result.get("steps") or ()
    )
    return ComparisonView(
        speedup=result.get("speedup", 0),
        naive_s=result.get("naive_s", 0),
        optimized_s=result.get("optimized_s", 0),
        checks=result.get("checks", 0),
        charts=tuple(charts),
        steps=steps,
        speedup_target=str(TARGETS["e2e"]["speedup"]),
        speedup_met=TARGETS["e2e"]["speedup"].met(result.get("speedup", 0)),
    )


def latest_comparison(
    rows: Iterable[Mapping[str, Any]], *, full: bool | None = None
) -> Mapping[str, Any] | None:
    """The newest of :func:`bench_history`'s rows that is a before/after comparison;
    with ``full`` True only full-size runs (the headline), False only quick ones."""
    return next(
        (
            r
            for r in rows
            if "speedup" in r["result"] and (full is None or r.get("quick") is not full)
        ),
        None,
    )


@dataclass(frozen=True)
class TargetTrend:
    """One target's figure over the stored full runs, oldest first."""

    suite: str
    field: str
    target: str
    target_value: float
    when: tuple[datetime, ...]
    values: tuple[float, ...]
    run_ids: tuple[int, ...]


def target_trends(rows: Iterable[Mapping[str, Any]]) -> list[TargetTrend]:
    """Each target's trend over the full runs among ``rows`` (:func:`bench_history`'s);
    targets without any full run are left out."""
    full = [r for r in reversed(list(rows)) if not r["quick"]]
    out = []
    for suite, targets in TARGETS.items():
        for field, target in targets.items():
            points = [
                (r["created_at"], float(r["result"][field]), r["id"])
                for r in full
                if _target_suite(r["suite"]) == suite
                and isinstance(r["result"].get(field), int | float)
            ]
            if points:
                when, values, ids = zip(*points, strict=True)
                out.append(TargetTrend(suite, field, str(target), target.value, when, values, ids))
    return out


# --- settings ------------------------------------------------------------------------------


NOW = "now"
RESTART = "restart"
LIVE_CACHE_FIELDS = ("max_size", "ttl_ms", "enable_prefetch", "prefetch_threshold")


def applies(group: str, field: str) -> str:
    """When a change of the setting takes effect: :data:`NOW` (the whole process, cache
    layers and batch runner) or :data:`RESTART`."""
    live = group == "batch" or (group == "cache" and field in LIVE_CACHE_FIELDS)
    return NOW if live else RESTART


def restart_hint(group: str, field: str, value: Any = None) -> str:
    """How to change a setting that needs a restart (to ``value``, if given)."""
    env = f"RECON_{group.upper()}_{field.upper()}"
    if value is not None:
        env += f"={setting_text(value)}"
    return f"set {env} or [{group}] {field} in the settings file"


def settings_rows(settings: Settings | LiveSettings) -> list[dict[str, str]]:
    """Every setting as text: group, field, seed name, value, default, valid range, doc,
    where the value came from (``origin``) and when a change applies (``applies``).

    Secrets are not shown: the API token and the webhook URL (its path is often a
    secret) as whether they are set, URLs without password.
    """
    live = (
        settings if isinstance(settings, LiveSettings) else LiveSettings(Loaded(settings, {}, None))
    )
    return [
        {
            "group": row["group"],
            "field": row["field"],
            "seed": row["seed"],
            "value": _shown(row["field"], row["value"]),
            "origin": live.origin(row["group"], row["field"]),
            "applies": applies(row["group"], row["field"]),
            "default": _shown(row["field"], row["default"]),
            "range": (
                f"{setting_text(row['range'][0])} – {setting_text(row['range'][1])}"
                if row["range"]
                else ""
            ),
            "doc": row["doc"],
        }
        for row in describe(live.current)
    ]


def _shown(field: str, value: Any) -> str:
    if field in ("token", "webhook_url"):
        return "(not set)" if value is None else "(set)"
    return safe_url(value) if field == "db_url" else setting_text(value)


# --- alerts --------------------------------------------------------------------------------


def events(
    console: Console, *, month: str | None = None, kind: str | None = None, limit: int = 200
) -> list[Event]:
    """Stored alert events, newest first, of ``month`` and ``kind`` when given."""
    month = validate_month(month) if month is not None else None
    if kind is not None and kind not in set(EventKind):
        known = ", ".join(k.value for k in EventKind)
        raise ConfigError("kind", kind, f"unknown event kind; expected one of {known}")
    return console.alerts.events(month=month, kinds=(kind,) if kind else (), limit=limit)


def delivery_text(event: Event, *, webhook: bool) -> str:
    """Where an event's delivery stands, in words."""
    if event.delivered_at is not None:
        return f"delivered {event.delivered_at:%Y-%m-%d %H:%M:%S}"
    if event.attempts:
        retry = f", next try {event.next_attempt_at:%H:%M:%S}" if event.next_attempt_at else ""
        return f"pending: {event.attempts} attempts failed ({event.last_error}){retry}"
    return "pending" if webhook else "stored (no webhook set)"


def event_rows(console: Console, found: Iterable[Event]) -> list[dict[str, Any]]:
    """Events as table rows: when, kind, month, district, details, delivery."""
    webhook = console.settings.notify.webhook_url is not None
    return [
        {
            "created_at": e.created_at,
            "kind": e.kind.value,
            "month": e.month,
            "district": e.district,
            "details": _details(e.payload),
            "delivery": delivery_text(e, webhook=webhook),
        }
        for e in found
    ]


def _details(payload: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in payload.items() if v is not None and k != "run_id")


CLOSE_EVENTS_SHOWN = 200
"""The newest close events a page shows (``recon events --month`` lists them all)."""


def close_events(console: Console, month: str) -> list[dict[str, Any]]:
    """The newest :data:`CLOSE_EVENTS_SHOWN` close events of ``month`` (month final, job
    failed, late revision), newest first."""
    found = console.alerts.events(
        month=validate_month(month), kinds=CLOSE_KINDS, limit=CLOSE_EVENTS_SHOWN
    )
    return event_rows(console, found)


def perf_alerts(console: Console, limit: int = 50) -> list[dict[str, Any]]:
    """The latest performance and watcher alerts, newest first."""
    kinds = [k for k in EventKind if k not in CLOSE_KINDS]
    return event_rows(console, console.alerts.events(kinds=kinds, limit=limit))


def setting_text(value: Any) -> str:
    """A setting's value as a user types it (``true``, ``30000``, ``0.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return "" if value is None else str(value)


def status_rows(console: Console, month: str) -> list[dict[str, Any]]:
    """One row per district of the month's latest run (the ``recon status`` table);
    ``warnings`` are :attr:`DistrictWarnings.warnings` (empty: none)."""
    warned = {w.district: list(w.warnings) for w in month_warnings(console, month)}
    return [
        {
            "district": j.district,
            "status": j.status.value,
            "phase": j.phase.value if j.phase else None,
            "reason": j.reason.value if j.reason else None,
            "final_as_of": j.final_as_of.isoformat() if j.final_as_of else None,
            "checks": j.checks,
            "significant_changes": j.significant_changes,
            "error": j.error,
            "final_metrics": final_metrics(console, j),
            "warnings": warned.get(j.district, []),
        }
        for j in console.jobs(month)
    ]


def final_metrics(console: Console, job: Job) -> dict[str, float] | None:
    """The metrics of ``job``'s final snapshot (names as on the timeline), or None
    while it has none (not completed, or completed without target-month data)."""
    if job.status != JobStatus.COMPLETED or job.final_as_of is None:
        return None
    snap = console.month_end(job.month).get(job.district)
    if snap is not None and snap.as_of == job.final_as_of:
        return dict(snap.metrics)
    # The month-end snapshot moved on (a later run saw newer data): the job's own entry.
    own = (
        e
        for e in console.timeline(job.id)
        if e.as_of == job.final_as_of and e.data_month in (None, job.month)
    )
    entry = next(own, None)
    return dict(entry.metrics) if entry is not None else None


__all__ = [
    "CLOSE_EVENTS_SHOWN",
    "MIN_TRACE_READS",
    "ORIGIN_CHOICES",
    "WHAT_IF_POINTS",
    "WhatIf",
    "traced_caches",
    "ATTENTION_ORDER",
    "CHANGE_KINDS",
    "COMPARISON_CHARTS",
    "DISTRICT_STATES",
    "COMPARISON_MODES",
    "MONTHS_BACK",
    "TIMELINE_METRICS",
    "Advice",
    "AdviceItem",
    "DONE",
    "BatchView",
    "WorkerView",
    "workers_rows",
    "workers_view",
    "ChangeMatrix",
    "CloseView",
    "ComparisonChart",
    "ComparisonView",
    "DistrictWarnings",
    "FINAL_COLUMNS",
    "FinalFigures",
    "OperationsView",
    "TimelineView",
    "LIVE_CACHE_FIELDS",
    "NOW",
    "RESTART",
    "advice",
    "applies",
    "restart_hint",
    "all_caches",
    "batch_marks",
    "cache_hit_rate",
    "cache_reads",
    "batch_history",
    "batch_view",
    "bench_history",
    "figures_table",
    "target_trends",
    "TargetTrend",
    "ComparisonStep",
    "cache_history",
    "cache_rows",
    "change_matrix",
    "close_events",
    "close_view",
    "comparison_view",
    "default_month",
    "delivery_text",
    "event_rows",
    "events",
    "district_state",
    "final_csv",
    "final_figures",
    "latency_series",
    "last_start",
    "month_warnings",
    "latest_comparison",
    "months",
    "operations_view",
    "perf_alerts",
    "resource_series",
    "setting_text",
    "settings_rows",
    "timeline_view",
    "what_if",
]
