"""The REST API (FastAPI): ``create_app(console)``; see :mod:`engine.api.app`."""

from __future__ import annotations

from engine.api.app import create_app

__all__ = ["create_app"]
