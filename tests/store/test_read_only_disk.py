"""A disk that turns read-only under a running node (a file system remounted read-only
after an error): SQLite finds out at the COMMIT, when it writes the log, and says "disk
I/O error" (SQLITE_IOERR_WRITE). Nothing of the transaction is stored, and the answer
says so: "not stored", as for a full disk, never "may have been stored"."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.reports import new_completion

from jobhooks.errors import CommitUnconfirmed, StoreError
from jobhooks.store import Store


def _write_refused() -> sqlite3.OperationalError:
    """What Python's sqlite3 raises when the log cannot be written (EROFS, EIO)."""
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = 778  # type: ignore[attr-defined]
    error.sqlite_errorname = "SQLITE_IOERR_WRITE"  # type: ignore[attr-defined]
    return error


@contextmanager
def read_only_disk(store: Store) -> Iterator[None]:
    """Every COMMIT of ``store`` that wrote something fails writing the log, as on a disk
    remounted read-only: SQLite rolls the transaction back and raises. A transaction that
    wrote nothing has nothing to write, and commits."""
    dialect = store._engine.dialect
    begin, commit = dialect.do_begin, dialect.do_commit
    begun: dict[int, int] = {}

    def note(dbapi_connection: Any) -> None:
        begun[id(dbapi_connection)] = dbapi_connection.total_changes
        begin(dbapi_connection)

    def refused(dbapi_connection: Any) -> None:
        if dbapi_connection.total_changes == begun.get(id(dbapi_connection)):
            commit(dbapi_connection)
            return
        dbapi_connection.rollback()
        raise _write_refused()

    dialect.do_begin = note  # type: ignore[method-assign]
    dialect.do_commit = refused  # type: ignore[method-assign]
    try:
        yield
    finally:
        dialect.do_begin, dialect.do_commit = begin, commit  # type: ignore[method-assign]


def test_a_check_in_refused_at_its_commit_by_a_read_only_disk_is_said_not_stored(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobhooks.db'}")
    report = new_completion("log")
    try:
        with read_only_disk(store), pytest.raises(StoreError) as refused:
            asyncio.run(store.check_in(report))
        assert not isinstance(refused.value, CommitUnconfirmed), str(refused.value)
        assert "failed to write" in str(refused.value)
        assert asyncio.run(store.reads.completion(report.id)) is None, "nothing of it is stored"
    finally:
        store.close()


def test_a_transaction_that_wrote_nothing_does_not_say_a_read_only_disk_takes_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim that finds nothing due writes nothing, and commits on a read-only disk too:
    it proves nothing about writes, so the node stays unready and the outage is one ERROR
    line, not one each second with a "takes writes again" between."""
    store = Store(f"sqlite:///{tmp_path / 'jobhooks.db'}")

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(StoreError, match="failed to write"):
                await store.check_in(new_completion("log"))
            assert await store.claim("worker-1", 10, {}) == []

    try:
        with caplog.at_level(logging.INFO, "jobhooks.store"), read_only_disk(store):
            asyncio.run(scenario())
            assert "failed to write" in (store.unready() or "")
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert len(errors) == 1, [record.getMessage() for record in errors]
        assert "takes writes again" not in caplog.text
    finally:
        store.close()
