"""Starting months from a request: one batch per month, refused while a batch works it."""

from __future__ import annotations

from collections.abc import Sequence

from engine.api.deps import ApiError
from engine.api.schemas import BatchJobIn, In, StartedOut
from engine.app.console import Console
from engine.batch.runner import BatchDetail, SubmitResult
from engine.errors import ConflictError

MonthRequest = tuple[str, list[str] | None, int]
"""A month to start: (month, districts or every published one, priority)."""


def start(console: Console, months: Sequence[MonthRequest], config: In | None) -> StartedOut:
    """Start a batch per (month, districts, priority); 409 for a month a batch still works."""
    raw = config.model_dump(by_alias=True, exclude_none=True) if config is not None else None
    results: list[SubmitResult] = []
    for month, districts, priority in months:
        try:
            results.append(
                console.start_batch(month, districts=districts, priority=priority, config=raw)
            )
        except ConflictError as exc:  # the month is still being worked
            raise ApiError(409, str(exc), "targetMonth") from exc
    details = [console.batch.batch_detail(r.batch_id) for r in results]
    notes = [note for r in results for note in r.notes]
    notes += [
        _resumed_note(m, d, detail) for (m, d, _), detail in zip(months, details, strict=True)
    ]
    return StartedOut(
        success=True,
        batch_id=results[0].batch_id,
        batch_ids=[r.batch_id for r in results],
        message="Batch processing started",
        job_count=sum(d.info.total for d in details),
        started_at=console.clock.now(),
        config=results[0].config,
        notes=[note for note in dict.fromkeys(notes) if note],
    )


def _resumed_note(month: str, asked: list[str] | None, detail: BatchDetail) -> str:
    """Say so when the month's unfinished run continued instead of the districts asked for."""
    worked = {item.spec.get("district") for item in detail.items}
    if asked is None or worked == set(asked):
        return ""
    return (
        f"{month} has an unfinished run: its districts {', '.join(sorted(map(str, worked)))} "
        "continue; start the others once it has completed"
    )


def group_by_month(jobs: Sequence[BatchJobIn]) -> tuple[list[MonthRequest], str]:
    """One entry per month (districts in order, without repeats) and a note on priorities."""
    months: dict[str, dict[str, int]] = {}
    for job in jobs:
        districts = months.setdefault(job.target_month, {})
        districts[job.district_id] = max(job.priority, districts.get(job.district_id, job.priority))
    grouped: list[MonthRequest] = [(m, list(d), max(d.values())) for m, d in months.items()]
    mixed = [m for m, d in months.items() if len(set(d.values())) > 1]
    note = (
        f"one batch per month runs at its highest job priority: {', '.join(mixed)}" if mixed else ""
    )
    return grouped, note
