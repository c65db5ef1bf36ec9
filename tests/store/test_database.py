"""Opening the database to serve from: what is refused, and how it is said."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jobhooks.errors import StoreError
from jobhooks.store import database
from jobhooks.store.database import open_database


def test_a_sqlite_without_json_functions_is_refused_naming_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A build without JSON1 has no json_each; asking for a table function it lacks
    # fails the same way.
    monkeypatch.setattr(database, "JSON_PROBE", "SELECT value FROM json_each_missing('[1]')")

    with pytest.raises(StoreError) as refused:
        open_database(f"sqlite:///{tmp_path / 'jobhooks.db'}")
    assert list(tmp_path.iterdir()) == [], "the file it created is removed"

    message = str(refused.value)
    assert f"version {sqlite3.sqlite_version}" in message
    assert "no JSON functions" in message and "3.38" in message
