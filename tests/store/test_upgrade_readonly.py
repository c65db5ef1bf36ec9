"""A SQLite database that cannot be written is refused when it is opened, whatever its
schema: a read-only file at the current schema used to open without a complaint, and
``serve`` then printed that it was serving before its first heartbeat failed with a
traceback (exit 3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import jobhooks.store.engine as engine_module
from jobhooks.errors import StoreError
from jobhooks.store.database import open_database
from jobhooks.store.engine import connect, sqlite_path
from jobhooks.store.migrate import current_revision, head_revision, upgrade


@pytest.fixture
def current_database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobhooks.db'}"
    engine = connect(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def read_only(current_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The current database, which every SQLite engine from now on opens read-only, as
    SQLite does by itself when this user may not write the file (chmod does not bind
    root, who may run the tests)."""
    real = engine_module.create_engine

    def create_engine(url: Any, **options: Any) -> Engine:
        path = sqlite_path(str(url))
        assert path is not None
        target = f"{path.resolve().as_uri()}?mode=ro"
        options["creator"] = lambda: sqlite3.connect(target, uri=True, check_same_thread=False)
        return real(url, **options)

    monkeypatch.setattr(engine_module, "create_engine", create_engine)
    return current_database


def test_a_read_only_database_at_the_current_schema_is_refused_as_it_opens(
    read_only: str,
) -> None:
    with pytest.raises(StoreError, match=r"cannot open the database .*jobhooks\.db: .*read-only"):
        open_database(read_only)


def test_upgrade_of_a_current_database_that_cannot_be_written_fails(read_only: str) -> None:
    engine = connect(read_only)
    try:
        with pytest.raises(Exception, match="readonly database"):
            upgrade(engine)
        assert current_revision(engine) == head_revision(), "left as it was"
    finally:
        engine.dispose()
