"""Fixtures of the store tests: a real PostgreSQL server for the whole session.

Started by :func:`tests.servers.start_postgres` on a free port in a temp dir (as the
``postgres`` user when the tests run as root) and stopped at the end; a missing server
FAILS the PostgreSQL tests with "install postgresql-15" (CI installs it)."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.servers import PostgresServer, start_postgres

_DB_NUMBERS = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_db(f"t{os.getpid()}_{next(_DB_NUMBERS)}")
