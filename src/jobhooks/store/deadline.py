"""A bound on how long one use of a PostgreSQL connection may take.

A server that stops answering while its host still acknowledges what is sent (a paused
virtual machine, a disk hung under the server, a stuck pooler) holds a call on an open
connection for ever: libpq has no timeout of its own for it, and the kernel sees nothing
wrong, so neither ``tcp_user_timeout`` nor keepalives end it. The store's uses of a
connection (a group of writes, a heartbeat, a read) are each watched; a connection
still in use :data:`DEADLINE` seconds after it was handed to the use has its socket
shut down, so the driver's call fails as on a broken connection and the usual handling
follows (a write is answered "not stored", or "may have been stored" when it was at its
COMMIT). Waiting for a free connection of the pool does not count.

The pool's check that a kept connection still works (a query, which a frozen server
never answers) is made under the watch too (see :func:`guard`). A broken connection does
not close the engine's gate by itself (a query may be slow, or wait on a lock, on a server
that works): the attempt to connect that follows does, if the server does not answer it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from jobhooks.errors import StoreError

__all__ = ["DEADLINE", "Watch", "Watcher", "guard", "overdue", "overdue_problem", "watch"]

DEADLINE = 30.0
"""Seconds a connection may stay in one use before it is broken: well above what a group of
writes or a read takes, well below the 100 s after which a .NET orchestrator's HTTP
client gives up on a check-in."""

logger = logging.getLogger("jobhooks.store")

_FRESH = "jobhooks_fresh"


class Watch:
    """One use of a connection under way on one thread. :attr:`tripped` says whether the
    connection it uses now was broken for taking too long."""

    __slots__ = ("_driver", "_fd", "bound_at", "tripped")

    def __init__(self) -> None:
        self._fd: int | None = None
        self._driver: int | None = None
        """The id of the driver's connection bound, to let it go by."""
        self.bound_at = 0.0
        """When its connection was handed to it (:func:`time.monotonic`)."""
        self.tripped = False

    def bind(self, connection: Connection) -> None:
        """Watch ``connection`` from now on (the use took it from the pool before)."""
        self._bind(connection.connection.dbapi_connection)

    def _bind(self, dbapi_connection: DBAPIConnection | None) -> None:
        fileno = getattr(dbapi_connection, "fileno", None)
        if fileno is None:  # SQLite's: no socket, nothing to watch
            return
        with contextlib.suppress(Exception):  # closed already: nothing to watch
            fd = fileno()
            self.bound_at = time.monotonic()
            self.tripped = False
            self._driver = id(dbapi_connection)
            self._fd = fd

    def _trip(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self.tripped = True
        # A second descriptor of the same socket: shutting it down ends the driver's wait
        # on the first, which stays the driver's to close.
        try:
            duplicate = os.dup(fd)
        except OSError:  # closed meanwhile: nothing to break
            return
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:  # not a socket (any more): nothing to break
            os.close(duplicate)
            return
        with contextlib.suppress(OSError), sock:
            sock.shutdown(socket.SHUT_RDWR)


class Watcher:
    """Keeps the uses of connections under way, and breaks the connections kept in one
    past :data:`DEADLINE`: a thread of its own checks once a second, started at the first
    use (``run=False``: only when :meth:`check` is called)."""

    def __init__(self, *, run: bool = True) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, Watch] = {}
        self._current = threading.local()
        self._thread: threading.Thread | None = None
        self._run_thread = run

    @contextlib.contextmanager
    def watch(self) -> Iterator[Watch]:
        """See :func:`watch`."""
        entry = Watch()
        outer = getattr(self._current, "watch", None)
        with self._lock:
            self._watches[id(entry)] = entry
            if self._thread is None and self._run_thread:
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

    def current(self) -> Watch | None:
        """This thread's use under way (the innermost), if any."""
        return getattr(self._current, "watch", None)

    def check(self, now: float) -> None:
        """Break the connections kept in one use for more than :data:`DEADLINE` seconds at
        ``now`` (:func:`time.monotonic`)."""
        with self._lock:
            for entry in self._watches.values():
                if entry._fd is not None and now - entry.bound_at > DEADLINE:
                    entry._trip()

    def let_go(self, dbapi_connection: DBAPIConnection) -> None:
        """Stop watching ``dbapi_connection`` (back in the pool, or closed), on whichever
        thread its use is: its descriptor may soon be another connection's."""
        driver = id(dbapi_connection)
        with self._lock:
            for entry in self._watches.values():
                if entry._driver == driver:
                    entry._fd = entry._driver = None

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, DEADLINE / 4))
            try:
                self.check(time.monotonic())
            except Exception:  # the thread must outlive whatever went wrong
                logger.exception("checking the database connections' deadline failed")


_WATCHER = Watcher()


def watch() -> contextlib.AbstractContextManager[Watch]:
    """Watch one use of a connection on this thread (see the module's text). A
    :func:`guard`-ed pool binds the connection it hands out; a connection kept from an
    earlier use is bound with :meth:`Watch.bind`. Uses on one thread nest."""
    return _WATCHER.watch()


def overdue_problem() -> str:
    """Why a use whose connection the deadline broke failed, in plain words."""
    return (
        f"the database server did not answer within {DEADLINE:g} s (a hung server, pooler "
        "or disk, a paused machine, or a lock another session holds)"
    )


def overdue(exc: Exception) -> StoreError:
    """The error a use whose connection the deadline broke fails with (``exc``, the
    driver's error, as its cause)."""
    error = StoreError(overdue_problem())
    error.__cause__ = exc
    return error


def guard(engine: Engine, watcher: Watcher = _WATCHER) -> None:
    """Watch the connections ``engine``'s pool hands out: each is bound to this thread's
    watch, then (but one just made) checked, standing for the pool's own pre-ping, which
    runs before anything can bind it. A connection that fails the check is replaced, and
    so is every other the pool keeps (a server restart or failover ended them all)."""

    def connect(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_FRESH] = True

    def checkout(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        _proxy: PoolProxiedConnection,
    ) -> None:
        current = watcher.current()
        if current is not None:
            current._bind(dbapi_connection)
        if record.info.pop(_FRESH, False):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces its connections and tries again
            raise InvalidatePoolError(f"a kept connection failed its check: {exc}") from exc

    def let_go(dbapi_connection: DBAPIConnection, *_rest: object) -> None:
        watcher.let_go(dbapi_connection)

    event.listen(engine, "connect", connect)
    event.listen(engine, "checkout", checkout)
    for name in ("checkin", "invalidate", "close"):
        event.listen(engine.pool, name, let_go)
