"""Opening a database to serve from: the one place that creates, migrates or checks it.

The embedded SQLite database is created and migrated on start (and says so
when it is new); a PostgreSQL database must already be at this version's
schema (``jobhooks db upgrade``). Every failure is a :class:`StoreError`
naming the database and the cause, never a driver's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from jobhooks.errors import SchemaOutOfDate, StoreError
from jobhooks.store.engine import connect, for_reads, is_sqlite, shown_url, sqlite_path
from jobhooks.store.failures import describe_failure
from jobhooks.store.migrate import current_revision, ensure_current, upgrade

__all__ = ["FileIdentity", "open_database", "peek", "upgrade_database"]

logger = logging.getLogger("jobhooks.store")
T = TypeVar("T")

POSTGRES_EXTRA = "pip install 'jobhooks[postgres]'"
_SIDE_FILES = ("-wal", "-shm", "-journal")
JSON_PROBE = "SELECT value FROM json_each('[1]')"
"""What tells whether SQLite has the JSON functions the store's lookups take lists with."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a path named when it was opened (device and inode)."""

    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        """The identity of the file at ``path`` now, None when there is none."""
        try:
            status = path.stat()
        except FileNotFoundError:
            return None
        return cls(status.st_dev, status.st_ino)


def _engine(url: str, pool_size: int, create: bool) -> Engine:
    try:
        return connect(url, pool_size=pool_size, create=create)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("psycopg"):
            raise StoreError(
                f"{shown_url(url)} is a PostgreSQL database, and the PostgreSQL driver "
                f"(psycopg) is not installed: {POSTGRES_EXTRA}"
            ) from None
        raise
    except OSError as exc:
        path = sqlite_path(url)
        folder = path.parent if path is not None else url
        raise StoreError(
            f"cannot create the data directory {folder}: {exc.strerror or exc}"
        ) from None


def _require_json() -> None:
    """Refuse a SQLite without its JSON functions, naming its version: the store passes
    lists to SQLite as JSON, and the first check-in would otherwise fail obscurely."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(JSON_PROBE).fetchall()
    except sqlite3.Error:
        raise StoreError(
            f"the SQLite library this Python uses (version {sqlite3.sqlite_version}) has no "
            "JSON functions, which jobhooks needs: use a Python built with SQLite 3.38 or "
            "later, or with an earlier SQLite built with JSON1"
        ) from None
    finally:
        probe.close()


def open_database(url: str, *, migrate: bool | None = None, pool_size: int = 8) -> Engine:
    """An engine on ``url``, ready to serve from.

    ``migrate`` (default: SQLite only) runs the migrations the database lacks;
    otherwise the schema must be current. A SQLite file is created when missing
    (one log line names it); once open, the engine never creates it again.
    Raises :class:`StoreError` (or :class:`SchemaOutOfDate`) saying what is wrong.
    """
    sqlite = is_sqlite(url)
    if sqlite:
        _require_json()
    if migrate is None:
        migrate = sqlite
    path = sqlite_path(url) if sqlite else None
    # An empty file is what a start that failed half-way (a full disk) leaves behind.
    new = path is not None and (not path.exists() or _holds_nothing(path))
    engine = _engine(url, pool_size, create=True)
    try:
        if migrate:
            upgrade(engine)
        else:
            ensure_current(engine)
    except SchemaOutOfDate:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError, StoreError) as exc:
        engine.dispose()
        if new and path is not None:
            _remove_new(path)
        why = describe_failure(exc)
        where = ""
        if path is not None and why.startswith("the database refused"):
            where = f" (is {path.parent} writable by this user?)"
        raise StoreError(f"cannot open the database {shown_url(url)}: {why}{where}") from None
    if path is None:
        return engine
    engine.dispose()
    if new:
        # Worth a warning: a database that was there before (now deleted or moved) means
        # every token and all history start empty.
        logger.warning("created a new database at %s", path.resolve())
    return _engine(url, pool_size, create=False)


def _remove_new(path: Path) -> None:
    """Remove what a failed first start created (an empty database and its side files),
    so the next start creates it afresh and says so."""
    for leftover in (path, *(path.with_name(path.name + end) for end in _SIDE_FILES)):
        with contextlib.suppress(OSError):
            if leftover == path and not _holds_nothing(path):
                continue  # another process made it meanwhile
            leftover.unlink()


def _holds_nothing(path: Path) -> bool:
    """Whether the file at ``path`` is empty, or a database without a single table (the
    first page a start that failed for want of room wrote, its migration rolled back)."""
    try:
        if path.stat().st_size == 0:
            return True
        reading = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        with contextlib.closing(reading):
            tables = reading.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return bool(tables == (0,))
    except (OSError, sqlite3.Error):
        return False


def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """Run the migrations ``url`` lacks; returns its revision before and after.

    Raises :class:`StoreError` saying what is wrong when it cannot be opened.
    """
    engine = _engine(url, 1, create=True)
    try:
        before = current_revision(engine)
    except (SQLAlchemyError, OSError, StoreError) as exc:
        engine.dispose()
        raise StoreError(
            f"cannot open the database {shown_url(url)}: {describe_failure(exc)}"
        ) from None
    engine.dispose()
    engine = open_database(url, migrate=True, pool_size=1)
    try:
        return before, current_revision(engine)
    finally:
        engine.dispose()


def peek(url: str, query: Callable[[Connection], T]) -> T | None:
    """``query`` on a database that already exists, creating and migrating nothing; None
    when there is none yet or it cannot be read (for commands that only look, such as
    ``validate``). A PostgreSQL server that does not answer is given up after 3 s."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is None or not path.exists():
            return None
    else:
        url = (
            make_url(url)
            .update_query_dict({"connect_timeout": "3"})
            .render_as_string(hide_password=False)
        )
    try:
        engine = _engine(url, 1, create=False)
    except StoreError:
        return None
    try:
        with for_reads(engine).connect() as connection:
            return query(connection)
    except (SQLAlchemyError, OSError) as exc:
        logger.debug("cannot look into %s: %s", shown_url(url), exc)
        return None
    finally:
        engine.dispose()
