"""What every router shares: the console dependency, the token check, the error answers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.types import DecoratedCallable

from engine.api.paths import PathRedactor
from engine.api.schemas import ErrorOut
from engine.app.console import Console

PREFIX = "/api/reconciliation"
DEFAULT_WINDOW_MS = 300_000
MAX_WINDOW_MS = 30 * 86_400_000
MAX_ID = 2**63 - 1  # SQLite integers; larger ids cannot exist


class ApiError(Exception):
    """An answer other than 200, with a message and the field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def get_console(request: Request) -> Console:
    """The console the app serves (``create_app``'s argument)."""
    console: Console = request.app.state.console
    return console


def get_redactor(request: Request) -> PathRedactor:
    """What takes local file paths out of the error texts the app serves."""
    redactor: PathRedactor = request.app.state.redact
    return redactor


ConsoleDep = Annotated[Console, Depends(get_console)]
RedactDep = Annotated[PathRedactor, Depends(get_redactor)]
TimeWindow = Annotated[
    int,
    Query(
        alias="timeWindow",
        gt=0,
        le=MAX_WINDOW_MS,
        description="window in milliseconds (at most 30 days)",
    ),
]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]

_bearer = HTTPBearer(
    auto_error=False,
    description="Required by every POST when the server has a token (api.token, RECON_API_TOKEN)",
)


def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the app's bearer token (when it has one)."""
    token: str | None = request.app.state.token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "a valid 'Authorization: Bearer <token>' header is required", "token")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "refused by the engine"},
    404: {"model": ErrorOut, "description": "no such id, or no data"},
    409: {"model": ErrorOut, "description": "conflicts with the current state"},
    401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
    413: {"model": ErrorOut, "description": "request body too large"},
    403: {"model": ErrorOut, "description": "cross-site request (no token configured)"},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers ``codes``."""
    return {code: _ERRORS[code] for code in codes}


def post(
    router: APIRouter, path: str, *codes: int, **options: Any
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A POST route: it needs the token (when set) or the same origin, its body is limited,
    ``codes`` documented."""
    return router.post(
        path,
        dependencies=[Depends(authorize)],
        responses=responses(401, 403, 413, *codes),
        **options,
    )
