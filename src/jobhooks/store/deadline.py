"""A bound on how long one use of a PostgreSQL connection may take.

A server that stops answering while its host still acknowledges what is sent (a paused
virtual machine, a disk hung under the server, a stuck pooler) holds a call on an open
connection for ever: libpq has no timeout of its own for it, and the kernel sees nothing
wrong, so neither ``tcp_user_timeout`` nor keepalives end it. The store's uses of a
connection (a group of writes, a heartbeat, a read) are each watched; one still under
way after :data:`DEADLINE` seconds has its socket shut down, so the driver's call fails
as on a broken connection and the usual handling follows (a write is answered "not
stored", or "may have been stored" when it was at its COMMIT).

A use is watched from before its connection is taken from the pool: the pool's check
that a kept connection still works (a query, which a frozen server never answers) is
made under the watch too (see :func:`guard`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from jobhooks.errors import StoreError

__all__ = ["DEADLINE", "Watch", "guard", "overdue", "watch"]

_FRESH = "jobhooks_fresh"

DEADLINE = 30.0
"""Seconds one use of a PostgreSQL connection may take before its connection is broken:
well above what a group of writes or a read takes, well below the 100 s after which a
.NET orchestrator's HTTP client gives up on a check-in."""


class Watch:
    """One use of a connection under way on one thread; :attr:`tripped` once its
    connection was broken for taking too long."""

    __slots__ = ("_fd", "started", "tripped")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._fd: int | None = None
        self.tripped = False

    def bind(self, dbapi_connection: DBAPIConnection | None) -> None:
        """Watch the driver's connection the use is now waiting on (a psycopg one: any other,
        SQLite's, has no socket and is not watched)."""
        fileno = getattr(dbapi_connection, "fileno", None)
        if fileno is not None:
            with contextlib.suppress(Exception):  # closed already: nothing to watch
                self._fd = fileno()

    def _trip(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self.tripped = True
        # A second descriptor of the same socket: shutting it down ends the driver's wait
        # on the first, which stays the driver's to close.
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)


class _Watcher:
    """The thread that breaks the connections of uses past :data:`DEADLINE` (started at the
    first use, one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, Watch] = {}
        self._current = threading.local()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self) -> Iterator[Watch]:
        entry = Watch()
        outer = getattr(self._current, "watch", None)
        with self._lock:
            self._watches[id(entry)] = entry
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobhooks-deadline", daemon=True
                )
                self._thread.start()
        self._current.watch = entry
        try:
            yield entry
        finally:
            self._current.watch = outer
            with self._lock:  # never broken after this: its socket may be another's by then
                del self._watches[id(entry)]

    def bind(self, dbapi_connection: DBAPIConnection) -> None:
        entry: Watch | None = getattr(self._current, "watch", None)
        if entry is not None:
            entry.bind(dbapi_connection)

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, DEADLINE / 4))
            now = time.monotonic()
            with self._lock:
                for entry in self._watches.values():
                    if not entry.tripped and now - entry.started > DEADLINE:
                        entry._trip()


_WATCHER = _Watcher()


def watch() -> contextlib.AbstractContextManager[Watch]:
    """Watch one use of a connection on this thread (see the module's text); bind its
    connection with :meth:`Watch.bind` (a :func:`guard`-ed pool binds one it hands out).
    Uses on one thread nest: the inner one is watched until it ends."""
    return _WATCHER.watch()


def overdue(exc: Exception) -> StoreError:
    """What a use whose connection the deadline broke failed with, in plain words (``exc``,
    the driver's error, as its cause)."""
    error = StoreError(
        f"the database server did not answer within {DEADLINE:g} s (a hung server, pooler "
        "or disk, a paused machine, or a lock another session holds)"
    )
    error.__cause__ = exc
    return error


def guard(engine: Engine) -> None:
    """Check each connection ``engine``'s pool hands out (but one just made) under this
    thread's watch, binding it first: a connection that fails the check is replaced. This
    stands for the pool's own pre-ping, which runs before anything can bind it."""

    def fresh(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_FRESH] = True

    def checkout(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        _proxy: PoolProxiedConnection,
    ) -> None:
        _WATCHER.bind(dbapi_connection)
        if record.info.pop(_FRESH, False):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError(f"the kept connection failed its check: {exc}") from exc

    event.listen(engine, "connect", fresh)
    event.listen(engine, "checkout", checkout)
