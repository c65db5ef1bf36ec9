"""Faults injected into a running store: a COMMIT whose answer never reaches jobhooks, a
database server that never answers."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection

from jobhooks.store import Store, writer
from jobhooks.store.fate import transaction_fate

__all__ = ["AnswerToCommitLost", "SilentServer"]


def _each(value: bool | Sequence[bool]) -> list[bool]:
    return [value] if isinstance(value, bool) else list(value)


class AnswerToCommitLost:
    """The store's next ``count`` COMMITs reach the database and are applied, but the
    connection fails before their answer arrives (a network cut, a server restart at
    that moment): the writer has to find out whether its group was stored.

    ``applied`` (one value, or one per lost COMMIT): False when the connection breaks
    before the COMMIT reaches the database, which rolls the transaction back when the
    connection closes. ``half_open``: the lost COMMITs never reach the database, and
    the connection stays open on its side (a client cut off without a word), so the
    transaction waits, holding its locks. ``server_says`` (one value, or one per
    question): PostgreSQL can be asked what became of the transaction (False: the
    question fails with ``question_error``: by default the server refuses connections,
    as while it restarts). ``fate_wait`` stands for the writer's ``FATE_WAIT``.
    ``session_ended``: the server ends the session once it has applied the lost COMMIT
    (an administrator, or a crash), so the writer finds it gone.
    """

    def __init__(
        self,
        store: Store,
        url: str,
        count: int = 1,
        *,
        skip: int = 0,
        applied: bool | Sequence[bool] = True,
        half_open: bool = False,
        server_says: bool | Sequence[bool] = True,
        fate_wait: float = 0.5,
        question_error: str = "could not connect to server: Connection refused",
        session_ended: bool = False,
    ) -> None:
        self.dialect = store._engine.dialect
        self.commit = self.dialect.do_commit
        self.error = psycopg.OperationalError if url.startswith("postgresql") else sqlite3.Error
        self.left = count
        self.skip = skip
        """COMMITs answered before the lost ones."""
        self.applied = _each(applied)
        self.half_open = half_open
        self.server_says = _each(server_says)
        self.fate_wait = fate_wait
        self.question_error = question_error
        self.session_ended = session_ended
        self.url = url
        self.asked = 0
        """Questions the writer asked about a transaction's fate."""
        self.lost = 0
        self._kept: list[int] = []
        """Sockets of half-open connections, closed on exit (the server then sees them go)."""

    def __call__(self, dbapi_connection: Any) -> None:
        if self.skip > 0:
            self.skip -= 1
        elif self.left > 0:
            self.left -= 1
            self.lost += 1
            if self.half_open:
                pgconn = dbapi_connection.pgconn
                self._kept.append(os.dup(pgconn.socket))
                with open(os.devnull, "wb") as nowhere:  # whatever the client says is lost
                    os.dup2(nowhere.fileno(), pgconn.socket)
            elif self.applied[min(self.lost, len(self.applied)) - 1]:
                self.commit(dbapi_connection)
            if self.session_ended:
                with psycopg.connect(self.url, autocommit=True) as admin:
                    pid = dbapi_connection.pgconn.backend_pid
                    admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            raise self.error("server closed the connection unexpectedly")
        self.commit(dbapi_connection)

    def _fate(self, connection: Connection, transaction: int) -> str | None:
        says = self.server_says[min(self.asked, len(self.server_says) - 1)]
        self.asked += 1
        if not says:
            raise self.error(self.question_error)
        return transaction_fate(connection, transaction)

    def __enter__(self) -> AnswerToCommitLost:
        self._fate_wait, writer.FATE_WAIT = writer.FATE_WAIT, self.fate_wait
        self.dialect.do_commit = self  # type: ignore[method-assign]
        writer.transaction_fate = self._fate  # type: ignore[assignment]
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dialect.do_commit = self.commit  # type: ignore[method-assign]
        writer.transaction_fate = transaction_fate
        writer.FATE_WAIT = self._fate_wait
        for kept in self._kept:
            os.close(kept)


class SilentServer:
    """A server on loopback that accepts connections and never says a word: a hung
    database server or pooler, or a firewall that lets the handshake in and nothing
    back. :meth:`answer` makes it pass connections on to a real server (the server is
    back, or was there all along), :meth:`silence` makes it stop passing anything either
    way while keeping every connection open (the server froze: a paused machine, a disk
    hung under it; its host still acknowledges what is sent), :meth:`refuse` makes it
    refuse new ones (the server is restarting). Leaving the ``with`` block closes every
    connection it holds."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"
        """A PostgreSQL URL that points at it."""
        self._held: list[socket.socket] = []
        self._target: tuple[str, int] | None = None
        self._passing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def answer(self, host: str, port: int) -> None:
        """From now on, pass new connections on to ``host:port`` (and what comes on those it
        passed on before :meth:`silence`); the silent ones it holds stay silent."""
        self._target = (host, port)
        self._passing.set()

    def silence(self) -> None:
        """From now on, pass nothing on either way (what comes is read and dropped)."""
        self._passing.clear()

    def refuse(self) -> None:
        """From now on, refuse new connections (the server is restarting: nothing listens
        on its port); those it holds stay as they are."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _address = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            self._held.append(connection)
            if self._target is not None and self._passing.is_set():
                server = socket.create_connection(self._target, timeout=5)
                server.settimeout(None)
                self._held.append(server)
                for source, target in ((connection, server), (server, connection)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self._passing.is_set():
                    target.sendall(data)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        self._thread.join(timeout=5)
        for connection in self._held:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes its pump
            connection.close()
