"""A disk that turns read-only under a running node (a file system remounted read-only
after an error): SQLite finds out at the COMMIT, when it writes the log, and says "disk
I/O error" (SQLITE_IOERR_WRITE). Nothing of the transaction is stored, and the answer
says so: "not stored", as for a full disk, never "may have been stored"."""

from __future__ import annotations

import asyncio
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
