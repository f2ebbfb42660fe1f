"""Database URLs as users may see them."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def safe_url(url: str) -> str:
    """A database URL fit to show: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


__all__ = ["safe_url"]
