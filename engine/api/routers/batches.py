"""Batches: start jobs in batches, watch one, cancel one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from engine.api.convert import batch_out
from engine.api.deps import PREFIX, ApiError, ConsoleDep, Id, RedactDep, post, responses
from engine.api.schemas import BatchOut, BatchProcessIn, StartedOut
from engine.api.starts import group_by_month, start
from engine.errors import ConfigError

router = APIRouter(prefix=f"{PREFIX}/performance/batch")


@post(router, "/process", 400, 409)
def process_batch(console: ConsoleDep, body: BatchProcessIn) -> StartedOut:
    """Start the listed jobs (one batch per month) and answer at once with the batch id."""
    months, note = group_by_month(body.jobs)
    started = start(console, months, body.config)
    if note:
        started.notes.append(note)
    return started


@router.get("/{batch_id}", response_model=BatchOut, responses=responses(404))
def batch_status(console: ConsoleDep, redact: RedactDep, batch_id: Id) -> Any:
    """A batch's status, live progress, items and every attempt."""
    return batch_out(console, console.batch.batch_detail(batch_id), redact)


@post(router, "/{batch_id}/cancel", 404, 409, response_model=BatchOut)
def cancel_batch(console: ConsoleDep, redact: RedactDep, batch_id: Id) -> Any:
    """Cancel a running batch: queued items are dropped, running ones stopped."""
    if console.batch.batch_detail(batch_id).info.status.finished:
        raise ApiError(409, f"batch {batch_id} has already ended", "id")
    try:
        console.batch.cancel(batch_id)
    except ConfigError as exc:  # it ended meanwhile
        raise ApiError(409, f"batch {batch_id} has already ended", "id") from exc
    return batch_out(console, console.batch.batch_detail(batch_id), redact)
