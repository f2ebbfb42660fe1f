"""Months: a month's final figures, as ``recon export`` writes them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from engine.api.deps import PREFIX, ConsoleDep, responses
from engine.api.schemas import Month
from engine.app import queries

router = APIRouter(prefix=f"{PREFIX}/months")


@router.get(
    "/{month}/final.csv",
    response_class=PlainTextResponse,
    responses={**responses(404), 200: {"content": {"text/csv": {}}}},
)
def final_csv(console: ConsoleDep, month: Month) -> PlainTextResponse:
    """The month's final figures as CSV, one row per district (as ``recon export``)."""
    return PlainTextResponse(
        queries.final_csv(console, month),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="final-figures-{month}.csv"'},
    )
