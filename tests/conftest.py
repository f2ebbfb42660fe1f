"""Fixtures shared by every test package: the databases of tests that run on
SQLite and PostgreSQL (see tests/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.databases import BACKENDS, NewUrl, new_databases, server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One throwaway PostgreSQL server for the session: the URL of its ``postgres`` database."""
    yield from server()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: each test that asks runs on both."""
    return str(request.param)


@pytest.fixture
def new_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NewUrl]:
    """Factory: a new, empty database of the test's backend at each call."""
    with ExitStack() as stack:
        yield new_databases(backend, tmp_path, request, stack)


@pytest.fixture
def db_url(new_db_url: NewUrl) -> str:
    """A new, empty database of the test's backend (SQLite file or PostgreSQL)."""
    return new_db_url()


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A new database of each backend, shared by the tests of a module that ask for it."""
    with ExitStack() as stack:
        yield new_databases(str(request.param), tmp_path_factory.mktemp("db"), request, stack)()
