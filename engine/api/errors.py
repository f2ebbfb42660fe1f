"""Every error answer of the API: ``{"error": message, "field": name}``, always valid JSON.

A rejected request is answered with what was wrong with it, and FastAPI's
validation errors echo the offending input. That input can hold what JSON
cannot carry out again: Python's decoder accepts ``NaN``, ``Infinity`` and
lone surrogates (``"\\udcff"``), which the response encoder refuses, so the
answer to bad input used to be a 500 and a reset connection. :func:`safe`
makes any error body encodable; :func:`error` applies it to every error answer.

Error texts also pass through the app's :class:`~engine.api.paths.PathRedactor`
so they never show local file paths (the GET endpoints need no token).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.api.deps import ApiError
from engine.api.paths import PathRedactor
from engine.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    EngineError,
    NotFoundError,
    StorageError,
)

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def safe(value: object) -> object:
    """``value`` (decoded JSON) with what JSON cannot encode replaced by text.

    Non-finite floats become ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``; a
    string's lone surrogates become their escape (``"\\\\udcff"``), in keys too.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE.get(value, "NaN")
    if isinstance(value, dict):
        return {safe(k): safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe(v) for v in value]
    return value


def error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    """An error answer; anything in it that JSON cannot carry is replaced (:func:`safe`)."""
    return JSONResponse(safe({"error": message, "field": field, **extra}), status_code=status)


def install(app: FastAPI) -> None:
    """Answer the engine's, FastAPI's and Starlette's errors in our shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(EngineError, _on_engine_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)


def _redact(request: Request, text: str) -> str:
    redactor: PathRedactor = request.app.state.redact
    return redactor(text)


def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    response = error(exc.status, _redact(request, str(exc)), exc.field)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _on_engine_error(request: Request, exc: Exception) -> JSONResponse:
    message = _redact(request, str(exc))
    if isinstance(exc, NotFoundError):
        return error(404, message, "id")
    if isinstance(exc, ConflictError):
        return error(409, message, "id")
    if isinstance(exc, ConfigError):
        return error(400, message, exc.field)
    # The database or the runner is unavailable: the server's problem, not the request's.
    status = 503 if isinstance(exc, StorageError | BatchError) else 500
    return error(status, message)


def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (a body that is not UTF-8 JSON, an unknown path) in our shape."""
    assert isinstance(exc, StarletteHTTPException)
    field = "body" if exc.status_code == 400 else None
    response = error(exc.status_code, str(exc.detail), field)
    response.headers.update(exc.headers or {})
    return response


def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    names = [str(p) for p in first["loc"] if p not in ("body", "query", "path", "header")]
    field = ".".join(names) or "body"
    return error(422, f"{field}: {first['msg']}", field, detail=errors)


__all__ = ["error", "install", "safe"]
