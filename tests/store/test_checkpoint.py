"""The SQLite log is copied into the database file off the write path (commits never
checkpoint), so the log does not grow without end."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from jobhooks.store.checkpoint import WalCheckpointer
from jobhooks.store.engine import connect


def test_a_checkpoint_copies_the_committed_pages_into_the_database_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    engine = connect(f"sqlite:///{path}")
    with engine.begin() as connection:  # the pragmas: WAL, commits never checkpoint
        connection.exec_driver_sql("CREATE TABLE filler (x BLOB)")
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    with writer:
        writer.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,)] * 200)
    writer.close()
    before = path.stat().st_size

    try:
        with caplog.at_level(logging.INFO, logger="jobhooks.store"):
            WalCheckpointer(engine, interval=3600).checkpoint()
    finally:
        engine.dispose()

    assert [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()] == []
    assert path.stat().st_size > before + 200 * 4000, "the pages are in the database file"
