"""Read models: what the dashboard (or any UI) shows, as plain rows.

Each function takes the :class:`~engine.app.console.Console` and returns
dataclasses, dicts and lists of JSON-like values, computed here so that the
pages only lay them out. Reads go through the console (and its cache) where
the console offers them, else through storage in bulk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from engine.app.console import MONTH_END_BATCH
from engine.app.tasks import Report
from engine.batch.runner import FINISHED, BatchInfo, BatchProgress, ItemRecord
from engine.bench import judged
from engine.cache import LAYERS
from engine.domain.models import (
    ALL_METRICS,
    Job,
    TimelineEntry,
    month_end,
    month_of,
    validate_month,
)
from engine.domain.rules import window_days
from engine.errors import ConfigError
from engine.settings import Settings, clamp, describe
from engine.sources.simulator import DISTRICTS
from engine.store.bench import BenchStore
from engine.store.schema import perf_aggregates

if TYPE_CHECKING:
    from engine.app.console import Console

MONTHS_BACK = 24  # calendar months offered besides the months that have runs
TIMELINE_METRICS = ("membership", "paid_clubs", "total_distinguished_clubs", "total_payments")
CHANGE_KINDS = ("first snapshot", "no change", "minor", "significant")
MAX_POINTS = 400  # points per series sent to a chart; longer series are averaged in buckets

# --- months --------------------------------------------------------------------------------


def months(console: Console) -> list[str]:
    """Months to pick from, newest first: those with runs and the last calendar months."""
    with_runs = {r["month"] for r in console.storage.runs()}
    month = month_of(console.clock.now().date())
    recent: set[str] = set()
    for _ in range(MONTHS_BACK):
        month = _previous_month(month)
        recent.add(month)
    return sorted(with_runs | recent, reverse=True)


def default_month(console: Console) -> str:
    """The latest month with jobs, else the previous calendar month."""
    with_runs = [r["month"] for r in console.storage.runs()]
    return max(with_runs) if with_runs else _previous_month(month_of(console.clock.now().date()))


def _previous_month(month: str) -> str:
    return month_of(date(int(month[:4]), int(month[5:7]), 1) - timedelta(days=1))


# --- close progress ------------------------------------------------------------------------


@dataclass(frozen=True)
class CloseView:
    """A month's close: KPIs, state counts and one progress row per district."""

    month: str
    total: int
    counts: dict[str, int]
    """Districts by state: completed, monitoring, stabilizing, finalizing, failed, ..."""
    by_reason: dict[str, int]
    percent_finalized: float
    days_since_month_end: int
    projected_close: date | None
    finished: bool
    final_as_of: date | None
    """The newest as-of date among the districts' final figures."""
    districts: list[dict[str, Any]]
    running_batch: int | None
    """The batch working this month in this process, if one runs."""

    @property
    def live(self) -> bool:
        """Whether the figures may still change: a batch works the month or jobs are open."""
        return self.running_batch is not None or (self.total > 0 and not self.finished)


def close_view(console: Console, month: str) -> CloseView:
    month = validate_month(month)
    progress = console.month_progress(month)
    jobs = console.jobs(month)
    rows = [_district_row(console, job) for job in jobs]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    today = console.clock.now().date()
    return CloseView(
        month=month,
        total=progress.total,
        counts=counts,
        by_reason=dict(progress.by_reason),
        percent_finalized=progress.percent_finalized,
        days_since_month_end=(today - month_end(month)).days,
        projected_close=progress.projected_close,
        finished=bool(jobs) and all(j.status.finished for j in jobs),
        final_as_of=max((j.final_as_of for j in jobs if j.final_as_of), default=None),
        districts=rows,
        running_batch=running_batch(console, month),
    )


def _district_row(console: Console, job: Job) -> dict[str, Any]:
    settings = console.settings.recon
    progress = console.reconciler.job_progress(job)
    window = window_days(job.month, settings) + job.extension_days
    return {
        "district": job.district,
        "job_id": job.id,
        "state": job.phase.value if job.phase else job.status.value,
        "status": job.status.value,
        "stable_days": min(job.stable_days, settings.stability_period_days),
        "stable_required": settings.stability_period_days,
        "window_days": window,
        "window_left": progress.days_left,
        "reason": job.reason.value if job.reason else None,
        "final_as_of": job.final_as_of,
        "eta": None if job.status.finished else progress.eta,
        "checks": job.checks,
        "significant_changes": job.significant_changes,
        "error": job.error,
    }


def month_is_live(console: Console, month: str) -> bool:
    """:attr:`CloseView.live` without building the view."""
    progress = console.month_progress(validate_month(month))
    unfinished = progress.total > 0 and progress.percent_finalized < 100
    return unfinished or running_batch(console, month) is not None


def running_batch(console: Console, month: str) -> int | None:
    """The newest unfinished month-end batch of ``month`` that this process runs."""
    for info in console.batch.list_batches(limit=20):
        if info.name == MONTH_END_BATCH.format(month=month) and info.status == "running":
            if _live_progress(console, info.batch_id) is not None:
                return info.batch_id
    return None


@dataclass(frozen=True)
class ChangeMatrix:
    """District x as-of day: how each district's month figures moved on each day checked."""

    districts: list[str]
    days: list[date]
    kinds: list[list[str | None]]
    """``kinds[d][i]``: one of :data:`CHANGE_KINDS` for district ``d`` on day ``i``, or None."""
    details: list[list[str]]
    """What changed significantly, same shape (empty when nothing did)."""


def change_matrix(console: Console, month: str) -> ChangeMatrix:
    """The heatmap of :func:`close_view`. Days after the closing period (data of a
    later month) are left out."""
    jobs = {j.id: j for j in console.jobs(validate_month(month))}
    cells: dict[tuple[str, date], tuple[str, str]] = {}
    for job_id, entries in console.storage.timelines(list(jobs)).items():
        for entry in entries:
            if entry.data_month in (None, month):
                cells[(jobs[job_id].district, entry.as_of)] = _change_kind(entry)
    districts = [j.district for j in jobs.values()]
    days = sorted({day for _, day in cells})
    grid = [[cells.get((d, day)) for day in days] for d in districts]
    return ChangeMatrix(
        districts,
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


def _batch_row(info: BatchInfo) -> dict[str, Any]:
    counts = info.counts
    finished = sum(n for state, n in counts.items() if state in FINISHED)
    return {
        "batch": info.batch_id,
        "name": info.name,
        "status": info.status,
        "created_at": info.created_at,
        "finished_at": info.finished_at,
        "total": info.total,
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "cancelled": counts.get("cancelled", 0),
        "unfinished": info.total - finished,
        "percent": 100.0 * finished / info.total if info.total else 100.0,
        "concurrency": info.config.get("max_concurrent_jobs"),
        "throttled_s": info.throttled_s,
    }


@dataclass(frozen=True)
class BatchView:
    """One batch: its row, live progress (this process's batches), items and throughput."""

    info: dict[str, Any]
    progress: BatchProgress | None
    items: list[dict[str, Any]]
    throughput: list[dict[str, Any]]
    """``at, items_per_s``: items finished per second, in up to 30 time buckets."""

    @property
    def percent(self) -> float:
        return self.progress.percent if self.progress is not None else float(self.info["percent"])

    @property
    def live(self) -> bool:
        """Still running in this process."""
        return self.progress is not None and not self.progress.done


def batch_view(console: Console, batch_id: int) -> BatchView:
    progress = _live_progress(console, batch_id)
    detail = console.batch.batch_detail(batch_id)
    finished = [i.finished_at for i in detail.items if i.finished_at is not None]
    return BatchView(
        info=_batch_row(detail.info),
        progress=progress,
        items=[_item_row(i) for i in detail.items],
        throughput=_throughput(detail.info.created_at, finished),
    )


def _live_progress(console: Console, batch_id: int) -> BatchProgress | None:
    try:
        return console.batch.progress(batch_id)
    except ConfigError:  # not a batch of this process: its stored counts are all there is
        return None


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
    return [
        {"at": start + timedelta(seconds=(n + 1) * width), "items_per_s": counts.get(n, 0) / width}
        for n in range(last + 1)
    ]


# --- cache ---------------------------------------------------------------------------------


def cache_rows(console: Console) -> list[dict[str, Any]]:
    """One row per cache layer, then the total, columns in display order."""
    stats = console.cache.stats()
    parts = [*((name, stats["layers"][name]) for name in LAYERS), ("total", stats["total"])]
    keep = (
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
    return [{"layer": name, **{k: s.get(k) for k in keep}} for name, s in parts]


def cache_history(console: Console) -> list[dict[str, Any]]:
    """``time, layer, hit_rate, size`` per history sample (hit rate since the start)."""
    rows = []
    for point in console.cache.history():
        at = datetime.fromisoformat(point["time"])
        for layer in (*LAYERS, "total"):
            s = point[layer]
            rows.append({"time": at, "layer": layer, "hit_rate": s["hit_rate"], "size": s["size"]})
    return rows


def what_if(
    console: Console, layer: str, sizes: str, policies: Sequence[str], ttls: str
) -> list[dict[str, Any]]:
    """The what-if tuner with sizes and TTLs typed as comma-separated whole numbers."""
    return console.cache.simulate(
        layer, _whole_numbers("sizes", sizes), policies, _whole_numbers("TTLs", ttls)
    )


def _whole_numbers(name: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise ConfigError(name, text, "expected whole numbers separated by commas") from exc
    if not values or any(v <= 0 for v in values):
        raise ConfigError(name, text, "expected at least one positive whole number")
    return values


# --- performance ---------------------------------------------------------------------------


def operation_rows(console: Console, window_s: float) -> list[dict[str, Any]]:
    """The monitor's figures per operation over the window, slowest total first."""
    rows = []
    for s in console.monitor.stats(window_s):
        row = dataclasses.asdict(s)
        row["errors"] = ", ".join(f"{k}: {v}" for k, v in s.errors.items())
        rows.append(row)
    return rows


def latency_series(console: Console, window_s: float, top: int = 8) -> list[dict[str, Any]]:
    """p50/p95 over time of the ``top`` operations by total time, from persisted history.

    A long window is averaged in the database into at most :data:`MAX_POINTS`
    points per operation (intervals grouped by row id, which grows with time).
    """
    ops = [s.operation for s in console.monitor.stats(window_s)[:top]]
    t = perf_aggregates
    where = (
        t.c.interval_end > console.clock.now() - timedelta(seconds=window_s),
        t.c.operation.in_(ops),
    )
    with console.storage.reading("latency_series") as conn:
        lo, hi = conn.execute(select(func.min(t.c.id), func.max(t.c.id)).where(*where)).one()
        if lo is None:
            return []
        step = -(-(hi - lo + 1) // MAX_POINTS)
        query = (
            select(
                func.max(t.c.interval_end).label("at"),
                t.c.operation,
                func.avg(t.c.p50_ms).label("p50_ms"),
                func.avg(t.c.p95_ms).label("p95_ms"),
                func.sum(t.c.calls).label("calls"),
            )
            .where(*where)
            .group_by(t.c.operation, (t.c.id - lo) // step)
            .order_by("at")
        )
        return [dict(row._mapping) for row in conn.execute(query)]


def resource_series(console: Console, window_s: float) -> list[dict[str, Any]]:
    """CPU and memory samples over the window, per process (long series averaged)."""
    samples = console.monitor.resources(window_s)["samples"]
    rows = [
        {
            "at": s["at"],
            "process": s["process"],
            "cpu_percent": s["cpu_percent"],
            "rss_mb": s["rss_mb"],
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


def bench_history(console: Console, limit: int = 50) -> list[dict[str, Any]]:
    """Stored benchmark results (``recon bench`` and the dashboard), newest first."""
    out = []
    for row in BenchStore(console.storage).recent(limit):
        result = row.result
        out.append(
            {
                "id": row.id,
                "created_at": row.created_at,
                "suite": row.suite,
                "quick": bool(row.quick),
                "figures": _figures(row.suite, result, judge=not row.quick),
                "result": result,
            }
        )
    return out


def _figures(suite: str, result: Mapping[str, Any], *, judge: bool) -> str:
    """A result's numbers in one line, the fields with a target first and, for a full
    run, whether each met it (e.g. ``read_speedup 10.1 (>= 10: met)``)."""
    numbers = {k: v for k, v in result.items() if isinstance(v, int | float)}
    found = judged({suite: numbers}, judge=judge)
    found.sort(key=lambda row: not row[3])  # stable: stored order otherwise
    verdicts = {"yes": "met", "no": "missed"}
    return ", ".join(
        f"{field} {value}" + (f" ({target}: {verdicts[met]})" if met else "")
        for _, field, value, target, met in found
    )


COMPARISON_SUITE = "e2e-dashboard"  # results of the Before / after page, beside ``recon bench``'s
COMPARISON_LIMITS = {
    "districts": (1, len(DISTRICTS)),
    "latency_ms": (0, 1000),
    "closing_days": (0, 62),
    "concurrency": (1, 20),
}


def start_comparison(
    console: Console, *, districts: int, latency_ms: float, closing_days: int, concurrency: int
) -> int:
    """Run the same month-end workload in naive and optimized mode as a background task.

    Returns the task id (see ``console.tasks``); the task's result is the
    benchmark's figures, also stored in ``bench_results`` as :data:`COMPARISON_SUITE`.
    """
    params: dict[str, Any] = {
        "districts": districts,
        "latency_ms": latency_ms,
        "closing_days": closing_days,
        "concurrency": concurrency,
    }
    for name, (lo, hi) in COMPARISON_LIMITS.items():
        if not lo <= params[name] <= hi:
            raise ConfigError(name, params[name], f"expected {lo} to {hi}")

    def work(report: Report) -> dict[str, float]:
        def progress(mode: str, done: int, total: int) -> None:
            before = total if mode == "optimized" else 0  # naive runs first
            report(before + done, 2 * total, f"{mode} mode: {done} of {total} districts")

        from engine.bench.e2e import compare  # the benchmarks load only when one runs

        result = compare(**params, on_progress=progress)
        BenchStore(console.storage).add(
            COMPARISON_SUITE, {**params, **result}, quick=False, when=console.clock.now()
        )
        return result

    return console.tasks.start("before/after comparison", work)


# --- settings ------------------------------------------------------------------------------


def settings_rows(settings: Settings) -> list[dict[str, str]]:
    """Every setting as text: group, field, seed name, value, default, valid range, doc.

    Secrets are not shown: the API token as whether it is set, URLs without password.
    """
    return [
        {
            "group": row["group"],
            "field": row["field"],
            "seed": row["seed"],
            "value": _shown(row["field"], row["value"]),
            "default": _shown(row["field"], row["default"]),
            "range": f"{_text(row['range'][0])} – {_text(row['range'][1])}" if row["range"] else "",
            "doc": row["doc"],
        }
        for row in describe(settings)
    ]


def safe_url(url: str) -> str:
    """A database URL fit to show: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def _shown(field: str, value: Any) -> str:
    if field == "token":
        return "(not set)" if value is None else "(set)"
    return safe_url(value) if field == "db_url" else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class SettingChange:
    group: str
    field: str
    seed: str
    value: Any
    """The validated (and clamped) value."""
    notes: tuple[str, ...]
    """What clamping changed."""
    applied: str
    """How the change takes effect, for the user."""


_LIVE_CACHE_FIELDS = ("max_size", "ttl_ms", "enable_prefetch", "prefetch_threshold")


def apply_setting(console: Console, group: str, field: str, raw: str) -> SettingChange:
    """Validate a typed value and apply it where the running engine allows.

    Cache sizes, TTL and prefetch are tuned on every cache layer at once;
    batch settings are for the next batches to use; the rest takes effect on
    restart. Invalid values raise :class:`ConfigError` and change nothing.
    """
    rows = [r for r in describe(console.settings) if (r["group"], r["field"]) == (group, field)]
    if not rows:
        raise ConfigError(f"{group}.{field}", raw, "unknown setting")
    changed = console.settings.with_values(group, **{field: raw.strip()})
    value = getattr(getattr(changed, group), field)
    notes = _clamp_notes(group, field, raw, rows[0]["range"])
    if group == "cache" and field in _LIVE_CACHE_FIELDS:
        for layer in LAYERS:
            console.cache.tune(layer, **{field: value})
        applied = "applied now to every cache layer"
    elif group == "batch":
        applied = "used by the batches you start from now on (the Batch runs form)"
        limit = console.settings.batch.max_concurrent_jobs
        if field == "max_concurrent_jobs" and value > limit:
            notes += (f"this process runs at most {limit} items at once (restart to raise it)",)
    else:
        env = f"RECON_{group.upper()}_{field.upper()}={_text(value)}"
        applied = f"takes effect on restart: set {env} or [{group}] {field} in the settings file"
    return SettingChange(group, field, rows[0]["seed"], value, notes, applied)


def _clamp_notes(group: str, field: str, raw: str, rng: Any) -> tuple[str, ...]:
    if rng is None:
        return ()
    try:
        note = clamp(group, field, float(raw))[1]
    except ValueError:
        return ()
    return (note,) if note else ()


__all__ = [
    "CHANGE_KINDS",
    "COMPARISON_LIMITS",
    "TIMELINE_METRICS",
    "BatchView",
    "ChangeMatrix",
    "CloseView",
    "SettingChange",
    "TimelineView",
    "apply_setting",
    "batch_history",
    "batch_view",
    "bench_history",
    "start_comparison",
    "cache_history",
    "cache_rows",
    "change_matrix",
    "close_view",
    "default_month",
    "latency_series",
    "month_is_live",
    "months",
    "operation_rows",
    "resource_series",
    "running_batch",
    "safe_url",
    "settings_rows",
    "timeline_view",
    "what_if",
]
