"""The store suite runs on both databases: SQLite in the test's directory, and a fresh
PostgreSQL database (a missing PostgreSQL fails these tests; see tests/pg.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import pg_database, pg_server, pg_template  # noqa: F401  (fixtures)
from support.storedb import StoreDb

from jobhooks.store.engine import connect
from jobhooks.store.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database: SQLite (WAL, synchronous=FULL) or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def db(store_url: str) -> Iterator[StoreDb]:
    """The store's tables on one database, for calling store operations directly."""
    engine = connect(store_url)
    upgrade(engine)
    try:
        yield StoreDb(engine)
    finally:
        engine.dispose()
