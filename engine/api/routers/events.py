"""Alert events: what was recorded (month final, job failed, ...) and its delivery."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query

from engine.api.deps import PREFIX, ConsoleDep, RedactDep
from engine.api.paths import PathRedactor
from engine.api.schemas import As, CamelValues, Month, Out, derive
from engine.app import queries
from engine.store.events import Event, EventKind

router = APIRouter(prefix=f"{PREFIX}/events")

EventOut = derive(
    Event,
    name="EventOut",
    rename={"district": "district_id", "month": "target_month"},
    types={"payload": CamelValues},
    add={"delivered": bool},
)


class EventsOut(Out):
    events: list[Annotated[Event, As(EventOut)]]
    total: int


@router.get("")
def list_events(
    console: ConsoleDep,
    redact: RedactDep,
    month: Annotated[Month | None, Query(description="only events of this month YYYY-MM")] = None,
    kind: Annotated[EventKind | None, Query(description="only events of this kind")] = None,
) -> EventsOut:
    """Stored alert events, newest first (at most 200), with their delivery state."""
    found = queries.events(console, month=month, kind=kind.value if kind else None)
    shown = [_redacted(e, redact) for e in found]
    return EventsOut(events=shown, total=len(shown))


def _redacted(event: Event, redact: PathRedactor) -> Event:
    """Errors name the export that failed, not where the machine keeps it."""
    payload: dict[str, Any] = dict(event.payload)
    if isinstance(payload.get("error"), str):
        payload["error"] = redact(payload["error"])
    return replace(event, payload=payload, last_error=redact.optional(event.last_error))
