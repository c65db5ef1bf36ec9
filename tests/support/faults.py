"""Faults injected into a running store: a COMMIT applied by the database whose answer
never reaches jobhooks."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy import Connection

from jobhooks.store import Store, writer
from jobhooks.store.dialect import transaction_fate

__all__ = ["AnswerToCommitLost"]


class AnswerToCommitLost:
    """The store's next ``count`` COMMITs reach the database and are applied, but the
    connection fails before their answer arrives (a network cut, a server restart at
    that moment): the writer has to find out whether its group was stored."""

    def __init__(
        self,
        store: Store,
        url: str,
        count: int = 1,
        *,
        skip: int = 0,
        server_says: bool = True,
        applied: bool = True,
    ) -> None:
        self.dialect = store._engine.dialect
        self.commit = self.dialect.do_commit
        self.error = psycopg.OperationalError if url.startswith("postgresql") else sqlite3.Error
        self.left = count
        self.skip = skip
        """COMMITs answered before the lost ones."""
        self.server_says = server_says
        """PostgreSQL can be asked what became of the transaction (False: it cannot be
        reached for a while, so the writer cannot know)."""
        self.asked = 0
        self.applied = applied
        """The lost COMMITs reach the database (False: the connection breaks before; the
        database rolls the transaction back when it notices)."""

    def __call__(self, dbapi_connection: object) -> None:
        if self.skip > 0:
            self.skip -= 1
        elif self.left > 0:
            self.left -= 1
            if self.applied:
                self.commit(dbapi_connection)
            raise self.error("server closed the connection unexpectedly")
        self.commit(dbapi_connection)

    def _fate(self, connection: Connection, transaction: int) -> str | None:
        self.asked += 1
        if not self.server_says:
            raise self.error("could not connect to server: Connection refused")
        return transaction_fate(connection, transaction)

    def __enter__(self) -> AnswerToCommitLost:
        self.dialect.do_commit = self  # type: ignore[method-assign]
        writer.transaction_fate = self._fate  # type: ignore[assignment]
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dialect.do_commit = self.commit  # type: ignore[method-assign]
        writer.transaction_fate = transaction_fate
