"""Copies of the embedded SQLite database: a backup taken while jobhooks runs (SQLite's
online backup API, a consistent snapshot), and a restore while it does not.

PostgreSQL databases are backed up with PostgreSQL's own tools (``pg_dump``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobhooks.errors import StoreError
from jobhooks.store.engine import is_sqlite, shown_url, sqlite_path
from jobhooks.store.nodes import STALE_AFTER, NodeIdentity, process_exists

__all__ = ["Copied", "backup_sqlite", "restore_sqlite"]

_BUSY_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Copied:
    """A copy made: where from, where to, and its size in bytes."""

    source: Path
    target: Path
    size: int
    set_aside: Path | None = None
    """A restore's target that could not be read, renamed out of the way (kept)."""


def _database_file(url: str) -> Path:
    if not is_sqlite(url):
        raise StoreError(
            f"{shown_url(url)} is a PostgreSQL database: back it up and restore it with "
            "PostgreSQL's own tools (pg_dump and pg_restore)"
        )
    path = sqlite_path(url)
    if path is None:
        raise StoreError(f"{shown_url(url)} is not a database file")
    return path


@contextlib.contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT)
    try:
        yield connection
    finally:
        connection.close()


def _check(connection: sqlite3.Connection, path: Path) -> None:
    """Raise StoreError unless ``connection`` holds an intact jobhooks database."""
    try:
        (verdict,) = connection.execute("PRAGMA integrity_check").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a SQLite database ({exc})") from None
    if verdict != "ok":
        raise StoreError(f"{path} is damaged (SQLite's integrity check: {verdict})")
    if not {"alembic_version", "completions", "tokens"} <= tables:
        raise StoreError(f"{path} is a SQLite database, but not a jobhooks one")


def backup_sqlite(url: str, target: Path) -> Copied:
    """Copy the database of ``url`` into the new file ``target`` while jobhooks may be
    running on it: every check-in acknowledged before the copy began is in it.

    The copy is written beside ``target`` and renamed into place once it passed
    SQLite's integrity check, so ``target`` is never half a database. Raises
    :class:`StoreError` when the database is not SQLite or missing, or ``target``
    exists (a backup never overwrites).
    """
    source = _database_file(url)
    if not source.is_file():
        raise StoreError(f"there is no database at {source} to back up")
    if target.exists():
        raise StoreError(f"{target} exists; a backup never overwrites a file: name a new one")
    if not target.parent.is_dir():
        raise StoreError(f"cannot back up to {target}: there is no folder {target.parent}")
    partial = target.with_name(target.name + ".partial")
    try:
        with _open(source) as reading, _open(partial) as writing:
            reading.backup(writing)
            _check(writing, partial)
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as exc:
        _remove_partial(partial)
        raise StoreError(f"cannot back up {source} to {target}: {exc}") from None
    except StoreError:
        _remove_partial(partial)
        raise
    return Copied(source, target, target.stat().st_size)


def _remove_partial(partial: Path) -> None:
    """Remove a copy that failed, and the journal SQLite kept beside it."""
    for leftover in (partial, partial.with_name(partial.name + "-journal")):
        leftover.unlink(missing_ok=True)


def _running_on(connection: sqlite3.Connection, now: float) -> list[str]:
    """The jobhooks processes that are running on this database: on this machine those
    whose process exists (paused ones too), elsewhere those whose heartbeat is fresh."""
    me = NodeIdentity.of_this_process()
    running = []
    rows = connection.execute(
        "SELECT id, host, boot_id, pid, pid_started, heartbeat_at FROM nodes "
        "WHERE stopped_at IS NULL"
    )
    for node_id, host, pid_space, pid, started, heartbeat_at in rows:
        if me.same_machine(host, pid_space):
            # Its process tells, whatever its heartbeat: a paused one still has it open.
            if not process_exists(pid, started):
                continue
        elif heartbeat_at < now - STALE_AFTER:
            continue
        running.append(f"{node_id} (heartbeat {max(now - heartbeat_at, 0):.0f} s ago)")
    return running


def _set_aside(path: Path) -> Path:
    """Rename a database that cannot be read (and its side files) out of the way."""
    suffix = time.strftime(".damaged-%Y%m%d-%H%M%S")
    for end in ("", "-wal", "-shm", "-journal"):
        side = path.with_name(path.name + end)
        if side.exists():
            side.rename(path.with_name(path.name + suffix + end))
    return path.with_name(path.name + suffix)


def restore_sqlite(url: str, backup: Path, now: float | None = None) -> Copied:
    """Replace the database of ``url`` with the copy in ``backup``, once the copy is known
    to be an intact jobhooks database and no jobhooks process runs on the database.

    The processes the copy shows as running are gone; the runs they held are taken
    back and retried when jobhooks starts again. Raises :class:`StoreError` saying
    why when it cannot.
    """
    target = _database_file(url)
    if not backup.is_file():
        raise StoreError(f"there is no backup at {backup}")
    set_aside = None
    try:
        with _open(backup) as reading:
            _check(reading, backup)
            if target.exists():
                try:
                    with _open(target) as current:
                        running = _running_on(current, time.time() if now is None else now)
                except sqlite3.DatabaseError:
                    set_aside = _set_aside(target)  # damaged beyond reading: a restore's case
                    running = []
                if running:
                    raise StoreError(
                        f"jobhooks is running on {target}: {', '.join(running)}; stop every "
                        "serve, worker and poll process using it, then restore"
                    )
            target.parent.mkdir(parents=True, exist_ok=True)
            with _open(target) as writing:
                reading.backup(writing)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot restore {backup} into {target}: {exc}") from None
    return Copied(backup, target, target.stat().st_size, set_aside)
