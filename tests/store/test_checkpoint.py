"""The SQLite log is copied into the database file off the write path (commits never
checkpoint), so the log does not grow without end."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from support.reports import new_completion

from jobhooks.errors import StoreError
from jobhooks.store import Store
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


def test_while_a_checkpoint_has_no_room_writes_wait_for_it_instead_of_growing_the_log(
    tmp_path: Path,
) -> None:
    # A full disk that is then freed: the log's pages need room in the database file.
    # Were writes taken first, the log would grow into the room freed (under load, in
    # well under a second), the checkpoint would never find any, and the node would stay
    # full for good. A file system that fills cannot be had without mounting one, so
    # SQLite's answer to the checkpoint is given here.
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    full = False

    def no_room(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if full and "wal_checkpoint" in statement:
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(store._engine, "before_cursor_execute", no_room)
    wal = path.with_name(path.name + "-wal")
    try:
        asyncio.run(store.check_in(new_completion("mail")))
        full = True
        store._checkpointer.checkpoint()  # type: ignore[union-attr]
        before = wal.stat().st_size

        with pytest.raises(StoreError, match="the disk holding the database is full"):
            asyncio.run(store.check_in(new_completion("mail")))
        assert wal.stat().st_size == before, "nothing was added to the log"
        assert store.writer.health.problem == "the disk holding the database is full"

        full = False  # room freed: the checkpoint takes it, then the write
        receipt = asyncio.run(store.check_in(new_completion("mail")))
        assert not receipt.duplicate
    finally:
        store.close()
