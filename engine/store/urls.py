"""Database URLs as users give them and see them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from engine.errors import ConfigError
from engine.settings import DEFAULT_DB_URL


def safe_url(url: str) -> str:
    """A database URL fit to show: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def parse_url(url: str) -> URL:
    """``url`` parsed; ConfigError if it is not a database URL, or names a SQLite file
    in a folder that does not exist.

    The default file's folder (``data/``, which ships with the project) is
    created when missing; any other folder must exist: a typo in a path should
    not leave a new database somewhere unexpected.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        example = "e.g. sqlite:///data/recon.db or postgresql+psycopg://user@host/db"
        raise ConfigError("db", safe_url(url), f"not a database URL ({example})") from exc
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:"):
        folder = Path(database).parent
        if url == DEFAULT_DB_URL:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise ConfigError("db", safe_url(url), f"the folder {folder} does not exist")
    return parsed


def libpq_url(url: str, *, needed_by: str) -> str:
    """The ``postgresql://`` URL libpq (psycopg) takes for a ``postgresql+psycopg://``
    SQLAlchemy URL; ConfigError naming ``needed_by`` for any other database."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
        raise ConfigError(
            "db",
            safe_url(url),
            f"{needed_by} needs a PostgreSQL database: a postgresql+psycopg:// URL",
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


__all__ = ["libpq_url", "parse_url", "safe_url"]
