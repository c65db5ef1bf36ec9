"""Connect to the database: SQLite (WAL, synchronous=FULL) or PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url

from jobhooks.store.deadline import guard
from jobhooks.store.gate import ConnectGate

__all__ = [
    "CONNECT_TIMEOUT",
    "IDLE_PROBE",
    "TCP_USER_TIMEOUT",
    "connect",
    "for_reads",
    "is_sqlite",
    "server_timeouts",
    "shown_url",
    "sqlite_path",
]

_READS = "jobhooks_reads"

CONNECT_TIMEOUT = 10
"""Seconds a new PostgreSQL connection may take, unless the URL sets ``connect_timeout``.
Without it, a server that accepts connections and never answers (a hung server or
pooler, a firewall that swallows the handshake) holds whoever connects for ever."""
TCP_USER_TIMEOUT = 15
"""Seconds what is sent to PostgreSQL may go unacknowledged before the connection is given
up (libpq's ``tcp_user_timeout``, Linux), unless the URL sets it. Without it, a server
whose host vanished (powered off, failed over to another machine) holds a write for the
kernel's retransmission timeout, about 15 minutes."""
IDLE_PROBE = 10
"""Seconds a PostgreSQL connection may sit idle before the kernel checks that the server is
still there (TCP keepalive, then every 5 s, given up after :data:`TCP_USER_TIMEOUT`), so
a connection that only listens (wake-ups, reload announcements) notices a vanished host."""


def server_timeouts(url: str) -> dict[str, int]:
    """The libpq settings that bound every wait of a connection to ``url`` (PostgreSQL) on
    a server that does not answer, less those the URL sets itself."""
    defaults = {
        "connect_timeout": CONNECT_TIMEOUT,
        "tcp_user_timeout": TCP_USER_TIMEOUT * 1000,
        "keepalives_idle": IDLE_PROBE,
        "keepalives_interval": 5,
    }
    given = make_url(url).query
    return {name: value for name, value in defaults.items() if name not in given}


def is_sqlite(url: str) -> bool:
    """True for a ``sqlite://`` URL."""
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for an in-memory database)."""
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def shown_url(url: str) -> str:
    """The URL as it may be printed: the file of a SQLite one, no password otherwise."""
    path = sqlite_path(url) if is_sqlite(url) else None
    if path is not None:
        return str(path)
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Durable by default: WAL with a full fsync at every commit. Speed comes
    # from committing many check-ins together, not from weaker settings.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Commits never checkpoint; WalCheckpointer does it off the write path.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.close()
    # Transactions are begun by _sqlite_begin, not by the driver (see there).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    # The driver would begin a transaction only at its first write, so a claim (read the
    # due runs, then mark them taken) by two processes on one file could both read the
    # same run. A transaction takes the file's write lock when it begins (the others
    # wait, busy_timeout, and then see what it wrote), except the store's reads, which
    # never wait, and autocommit work (a checkpoint cannot run inside a transaction).
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN" if options.get(_READS) else "BEGIN IMMEDIATE")


def for_reads(engine: Engine) -> Engine:
    """The engine for transactions that only read: on SQLite they take no lock and never
    wait for a writer (WAL); every other transaction takes the write lock as it begins,
    so what it reads cannot change before it commits (PostgreSQL locks rows instead)."""
    return engine.execution_options(**{_READS: True})


def connect(
    url: str, *, pool_size: int = 8, create: bool = True, gate: ConnectGate | None = None
) -> Engine:
    """An engine for ``url``.

    For SQLite, ``create`` lets a connection create the file (and its folder);
    without it a missing file is an error, so a database deleted under a
    running process is never silently replaced by an empty one. On PostgreSQL,
    every new connection goes through ``gate`` (a :class:`ConnectGate` of its own by
    default): after an attempt that took long and failed, the next ones are refused at
    once until an attempt made in the background reaches the server.
    """
    if is_sqlite(url):
        path = sqlite_path(url)
        options: dict[str, Any] = {}
        if path is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif path is not None:
            target = f"file:{quote(str(path.resolve()))}?mode=rw"
            options["creator"] = lambda: sqlite3.connect(target, uri=True, check_same_thread=False)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
            **options,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(
        url, connect_args=server_timeouts(url), pool_size=pool_size, max_overflow=pool_size
    )
    gate = gate or ConnectGate()
    event.listen(engine, "do_connect", _through(gate))
    event.listen(engine, "engine_disposed", lambda _engine: gate.stop())
    guard(engine)  # a kept connection is checked as it is taken, under the deadline
    return engine


def _through(gate: ConnectGate) -> Callable[[Dialect, Any, Any, Any], Any]:
    def do_connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
        failures = dialect.loaded_dbapi.OperationalError
        return gate.attempt(lambda: dialect.connect(*cargs, **cparams), failures)

    return do_connect
