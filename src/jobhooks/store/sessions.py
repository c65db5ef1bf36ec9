"""Dashboard sessions kept in the database, so signing out (or revoking the token) ends a
session whatever copies of its cookie exist, on every node."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, delete, select, update

from jobhooks.store.access import Database
from jobhooks.store.tables import ui_sessions
from jobhooks.store.writer import BatchOperation

__all__ = [
    "SessionStore",
    "end_session",
    "end_sessions_of_token",
    "purge_sessions",
    "session_active",
    "start_sessions",
]


def start_sessions(
    connection: Connection, sessions: Sequence[tuple[str, str, float]], now: float
) -> list[None]:
    """Record new sessions: (session id, token id, expiry)."""
    connection.execute(
        ui_sessions.insert(),
        [
            {"id": sid, "token_id": token, "created_at": now, "expires_at": expires}
            for sid, token, expires in sessions
        ],
    )
    return [None] * len(sessions)


def end_session(connection: Connection, session_ids: Sequence[str], now: float) -> list[None]:
    """End sessions (sign-out)."""
    connection.execute(
        update(ui_sessions)
        .where(ui_sessions.c.id.in_(list(session_ids)), ui_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
    return [None] * len(session_ids)


def end_sessions_of_token(connection: Connection, token_id: str, now: float) -> None:
    """End every session signed in with a token (it was revoked)."""
    connection.execute(
        update(ui_sessions)
        .where(ui_sessions.c.token_id == token_id, ui_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


def session_active(connection: Connection, session_id: str, token_id: str, now: float) -> bool:
    """True while the session exists for this token, has not ended and has not expired."""
    query = select(ui_sessions.c.id).where(
        ui_sessions.c.id == session_id,
        ui_sessions.c.token_id == token_id,
        ui_sessions.c.ended_at.is_(None),
        ui_sessions.c.expires_at > now,
    )
    return connection.execute(query).first() is not None


def purge_sessions(connection: Connection, cutoff: float) -> None:
    """Forget sessions that expired or ended before ``cutoff``."""
    connection.execute(
        delete(ui_sessions).where(
            (ui_sessions.c.expires_at < cutoff) | (ui_sessions.c.ended_at < cutoff)
        )
    )


class SessionStore:
    """Dashboard sessions: started at sign-in, ended at sign-out, checked on every page."""

    def __init__(self, database: Database, clock: Callable[[], float]) -> None:
        self._db = database
        self._clock = clock
        self._start: BatchOperation[tuple[str, str, float], None] = BatchOperation(
            "session_start", start_sessions
        )
        self._end: BatchOperation[str, None] = BatchOperation(
            "session_end", end_session, repeatable=True
        )

    async def start(self, session_id: str, token_id: str, expires_at: float) -> None:
        """Record a sign-in."""
        await self._db.write(self._start, (session_id, token_id, expires_at))

    async def end(self, session_id: str) -> None:
        """End a session (sign-out): its cookie stops working on every node."""
        await self._db.write(self._end, session_id)

    async def active(self, session_id: str, token_id: str) -> bool:
        """True while a session has neither ended nor expired."""
        return await self._db.read(session_active, session_id, token_id, self._clock())
