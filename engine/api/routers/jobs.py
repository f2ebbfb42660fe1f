"""Jobs: start a month, list a month's jobs with its progress, one job, its timeline, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from engine.api.convert import job_out
from engine.api.deps import PREFIX, ConsoleDep, Id, RedactDep, post, responses
from engine.api.schemas import JobOut, JobsOut, Month, StartedOut, StartJobsIn, TimelineOut
from engine.api.starts import start
from engine.app.months import month_status
from engine.domain.models import JobStatus

router = APIRouter(prefix=f"{PREFIX}/jobs")


@post(router, "", 400, 409)
def start_jobs(console: ConsoleDep, body: StartJobsIn) -> StartedOut:
    """Start (or resume) a month for some districts, or every published one."""
    districts = list(dict.fromkeys(body.district_ids)) if body.district_ids else None
    return start(console, [(body.target_month, districts, body.priority)], body.config)


@router.get("")
def list_jobs(
    console: ConsoleDep,
    redact: RedactDep,
    month: Annotated[Month, Query(description="target month YYYY-MM")],
    status: JobStatus | None = None,
) -> JobsOut:
    """The jobs of the month's latest run, optionally with one status, its progress and
    where its close stands."""
    found = console.jobs(month, status.value if status else None)
    return JobsOut(
        target_month=month,
        jobs=[job_out(console, j, redact) for j in found],
        total=len(found),
        progress=console.month_progress(month),
        month_status=month_status(console, month),
    )


@router.get("/{job_id}", response_model=JobOut, responses=responses(404))
def get_job(console: ConsoleDep, redact: RedactDep, job_id: Id) -> Any:
    """One job with its progress and ETA."""
    return job_out(console, console.job(job_id), redact)


@router.get("/{job_id}/timeline", responses=responses(404))
def timeline(console: ConsoleDep, job_id: Id) -> TimelineOut:
    """Every check of the job: as-of date, data month, metrics and changes."""
    console.job(job_id)  # 404 for an unknown job
    entries = console.timeline(job_id)
    return TimelineOut(job_id=job_id, entries=list(entries), total=len(entries))


@post(router, "/{job_id}/cancel", 404, 409, response_model=JobOut)
def cancel_job(console: ConsoleDep, redact: RedactDep, job_id: Id) -> Any:
    """Cancel an unfinished job and stop the batch item working it."""
    return job_out(console, console.cancel_job(job_id), redact)  # finished: ConflictError -> 409
