"""What became of a PostgreSQL transaction whose COMMIT went unanswered.

The writer notes, before a COMMIT, the id of its transaction (when the group
wrote anything) and which server session it runs in. Should the answer be lost
(a network cut, a server restart at that moment), another connection asks the
server whether that transaction committed, and ends the writer's old session if
it lingers: one still waiting for a COMMIT that never reached it holds its rows
until the server notices its client is gone, which may take hours.

A transaction id is only an identity while the server keeps running: after a
crash (even of one server process, which restarts them all), ids whose records
never reached the disk are handed out again. So an answer of ``committed`` is
only trusted while the old session is still there, which proves the server has
not restarted since.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

__all__ = ["Session", "end_session", "session_of", "session_state", "transaction_fate",
           "transaction_id"]  # fmt: skip

_SESSION_KEY = "jobhooks_session"


@dataclass(frozen=True, slots=True)
class Session:
    """A PostgreSQL server session: its process id and when it started (a process id
    alone is reused)."""

    pid: int
    started: str


def _modern(connection: Connection) -> bool:
    """PostgreSQL 13 or newer: transaction ids as ``xid8`` (``txid_*`` are kept for older)."""
    version = connection.dialect.server_version_info
    return version is None or version >= (13,)


def session_of(connection: Connection) -> Session | None:
    """The server session ``connection`` talks to (None on SQLite); asked once per
    connection to the server, then remembered with it."""
    if connection.dialect.name != "postgresql":
        return None
    known = connection.info.get(_SESSION_KEY)
    if isinstance(known, Session):
        return known
    row = connection.exec_driver_sql(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    ).one()
    session = Session(int(row[0]), row[1].isoformat())
    connection.info[_SESSION_KEY] = session
    return session


def transaction_id(connection: Connection) -> int | None:
    """The id of the open transaction on PostgreSQL, if it has written anything (None
    otherwise, and on SQLite, whose COMMIT is a call that returns or raises)."""
    if connection.dialect.name != "postgresql":
        return None
    query = (
        "SELECT pg_current_xact_id_if_assigned()::text"
        if _modern(connection)
        else "SELECT txid_current_if_assigned()"
    )
    found = connection.exec_driver_sql(query).scalar()
    return None if found is None else int(found)


def transaction_fate(connection: Connection, transaction: int) -> str | None:
    """What became of a PostgreSQL transaction: ``committed``, ``aborted`` or
    ``in progress`` (None once the server no longer knows, long after). An id the
    server has not reached yet (it lost it in a crash) was never committed: ``aborted``.
    Ends the connection's transaction."""
    query = (
        "SELECT pg_xact_status(%(id)s::text::xid8)"
        if _modern(connection)
        else "SELECT txid_status(%(id)s)"
    )
    try:
        fate = connection.exec_driver_sql(query, {"id": transaction}).scalar_one()
    except DBAPIError as exc:
        if "in the future" not in str(exc.orig):
            raise
        fate = "aborted"
    connection.rollback()
    return None if fate is None else str(fate)


def session_state(connection: Connection, session: Session) -> str | None:
    """What ``session`` is doing (``active``, ``idle in transaction``, ...), None once it
    has ended. Ends the connection's transaction."""
    state = connection.exec_driver_sql(
        "SELECT state FROM pg_stat_activity WHERE pid = %(pid)s"
        " AND backend_start = %(started)s::timestamptz",
        {"pid": session.pid, "started": session.started},
    ).scalar()
    connection.rollback()
    return None if state is None else str(state)


def end_session(connection: Connection, session: Session, *, idle_only: bool) -> bool:
    """End ``session`` (``idle_only``: only while it waits for its client inside a
    transaction); True if it was. Only for a session whose own client has given up on
    it: the same role may end its own sessions. Ends the connection's transaction."""
    ended = connection.exec_driver_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %(pid)s"
        " AND backend_start = %(started)s::timestamptz"
        + (" AND state LIKE 'idle in transaction%%'" if idle_only else ""),
        {"pid": session.pid, "started": session.started},
    ).scalar()
    connection.rollback()
    return bool(ended)
