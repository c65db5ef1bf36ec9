"""Backups of the embedded SQLite database taken while it is written, and restores."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from jobhooks.errors import StoreError
from jobhooks.store import Store
from jobhooks.store.backup import backup_sqlite, restore_sqlite
from jobhooks.store.nodes import STALE_AFTER, NodeIdentity


def test_backups_taken_while_tokens_are_written_are_intact_databases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobhooks.db'}"
    store = Store(url)
    stop = threading.Event()
    writing = threading.Event()

    def write() -> None:
        async def tokens() -> None:
            while not stop.is_set():
                await store.tokens.create("viewer", None, "during the backup")
                writing.set()

        asyncio.run(tokens())

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # The copies start once writes are under way (three copies can be quicker than
        # the first token's commit).
        assert writing.wait(30), "no token was written"
        copies = [backup_sqlite(url, tmp_path / f"copy-{n}.db") for n in range(3)]
    finally:
        stop.set()
        writer.join()
        store.close()
    counts = []
    for copy in copies:
        with sqlite3.connect(copy.target) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            counts.append(connection.execute("SELECT count(*) FROM tokens").fetchone()[0])
        assert not copy.target.with_name(copy.target.name + ".partial").exists()
    assert counts == sorted(counts), "each copy is a later snapshot of the same database"
    assert counts[-1] > 0


def test_a_restore_into_a_new_place_brings_everything_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobhooks.db'}"
    store = Store(url)
    secret, info = asyncio.run(store.tokens.create("admin", None, "kept"))
    store.close()
    copy = backup_sqlite(url, tmp_path / "copy.db")

    moved = f"sqlite:///{tmp_path / 'elsewhere' / 'jobhooks.db'}"
    restore_sqlite(moved, copy.target)

    again = Store(moved)
    try:
        assert [token.label for token in asyncio.run(again.tokens.all())] == ["kept"]
    finally:
        again.close()
    assert secret.startswith("jh_") and info.role == "admin"


def test_only_a_jobhooks_database_is_restored(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text)")
    with pytest.raises(StoreError, match="a SQLite database, but not a jobhooks one"):
        restore_sqlite(f"sqlite:///{tmp_path / 'jobhooks.db'}", other)
    with pytest.raises(StoreError, match="there is no backup at"):
        restore_sqlite(f"sqlite:///{tmp_path / 'jobhooks.db'}", tmp_path / "absent.db")
    with pytest.raises(StoreError, match="there is no database at"):
        backup_sqlite(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path / "copy.db")


def test_a_restore_refuses_while_a_paused_process_of_this_machine_is_on_the_database(
    tmp_path: Path,
) -> None:
    """A node paused (SIGSTOP) past its heartbeat still has the database open: restored
    under it, it resumes on a database gone back in time. Its process still exists on
    this machine, so the restore refuses as for a running one."""
    url = f"sqlite:///{tmp_path / 'jobhooks.db'}"
    store = Store(url)
    paused = NodeIdentity.of_this_process()
    try:
        asyncio.run(store.start_heartbeat(paused, lambda: False))  # registered, then silent
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "jobhooks.db") as connection:  # paused, not stopped
        connection.execute("UPDATE nodes SET stopped_at = NULL")
    copy = backup_sqlite(url, tmp_path / "copy.db")

    later = time.time() + 10 * STALE_AFTER
    with pytest.raises(StoreError, match=f"jobhooks is running on .*{paused.id}"):
        restore_sqlite(url, copy.target, now=later)
