"""API tokens: random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, select, update

from jobhooks.store.access import Database
from jobhooks.store.sessions import end_sessions_of_token
from jobhooks.store.tables import tokens
from jobhooks.store.writer import BatchOperation

__all__ = ["PREFIX", "ROLES", "TokenInfo", "TokenStore", "hash_token", "token_id_of"]

ROLES = ("agent", "admin", "viewer")
PREFIX = "jh_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token grants: a role, and for an agent token the one agent it may report for."""

    id: str
    role: str
    agent_id: uuid.UUID | None
    label: str | None
    created_at: float
    revoked_at: float | None


def _new_token_id() -> str:
    return secrets.token_hex(6)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to make: its role, its agent (agent tokens only) and a label."""

    role: str
    agent_id: uuid.UUID | None = None
    label: str | None = None
    id: str = field(default_factory=_new_token_id)
    secret: str = field(default_factory=_new_secret, repr=False)
    """Chosen with the request: written again after a failure that left unclear whether
    it was stored, the token is found rather than made twice."""

    @property
    def token(self) -> str:
        """The token as its holder presents it."""
        return f"{PREFIX}{self.id}_{self.secret}"


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id_of(token_or_id: str) -> str:
    """A token's id, given the id or the token itself (``jh_<id>_<secret>``)."""
    if token_or_id.startswith(PREFIX):
        return token_or_id[len(PREFIX) :].split("_", 1)[0]
    return token_or_id


def _info(row: Row[Any]) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        role=row.role,
        agent_id=uuid.UUID(row.agent_id) if row.agent_id else None,
        label=row.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _create(
    connection: Connection, requests: Sequence[NewToken], now: float
) -> list[tuple[str, TokenInfo]]:
    made = []
    for request in requests:
        token = request.token
        info = TokenInfo(request.id, request.role, request.agent_id, request.label, now, None)
        connection.execute(
            tokens.insert().values(
                id=request.id,
                hash=hash_token(token),
                role=request.role,
                agent_id=str(request.agent_id) if request.agent_id else None,
                label=request.label,
                created_at=now,
            )
        )
        made.append((token, info))
    return made


def _create_again(
    connection: Connection, requests: Sequence[NewToken], now: float
) -> list[tuple[str, TokenInfo]]:
    """Make tokens whose group failed; one that group stored after all (its COMMIT got no
    answer) is answered from what is stored."""
    made = []
    for request in requests:
        row = connection.execute(
            select(tokens).where(
                tokens.c.id == request.id, tokens.c.hash == hash_token(request.token)
            )
        ).first()
        if row is None:
            made += _create(connection, [request], now)
        else:
            made.append((request.token, _info(row)))
    return made


def _revoke(connection: Connection, token_ids: Sequence[str], now: float) -> list[bool]:
    revoked = []
    for token_id in token_ids:
        result = connection.execute(
            update(tokens)
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        end_sessions_of_token(connection, token_id, now)
        revoked.append(result.rowcount > 0)
    return revoked


def find_token(connection: Connection, token: str) -> TokenInfo | None:
    """What a presented token grants, or None if it is unknown or revoked."""
    row = connection.execute(
        select(tokens).where(tokens.c.hash == hash_token(token), tokens.c.revoked_at.is_(None))
    ).first()
    return _info(row) if row is not None else None


def find_token_id(connection: Connection, token_id: str) -> TokenInfo | None:
    """What the token with this id grants, or None if it is unknown or revoked."""
    row = connection.execute(
        select(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
    ).first()
    return _info(row) if row is not None else None


def list_tokens(connection: Connection) -> list[TokenInfo]:
    """Every token, newest first (never the tokens themselves)."""
    rows = connection.execute(select(tokens).order_by(tokens.c.created_at.desc())).all()
    return [_info(row) for row in rows]


class TokenStore:
    """Tokens: made, found, listed and revoked, every write through the store's writer."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._create: BatchOperation[NewToken, tuple[str, TokenInfo]] = BatchOperation(
            "token_create", _create, again=_create_again
        )
        self._revoke: BatchOperation[str, bool] = BatchOperation("token_revoke", _revoke)

    async def create(
        self, role: str, agent_id: uuid.UUID | None = None, label: str | None = None
    ) -> tuple[str, TokenInfo]:
        """Make a token; returns it (the only time it is known) and what it grants.

        Raises ValueError for a role that does not exist, or an agent id given to
        another role than ``agent`` (or missing for it).
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if (role == "agent") != (agent_id is not None):
            raise ValueError("an agent token needs an agent id, and only an agent token has one")
        return await self._db.write(self._create, NewToken(role, agent_id, label))

    async def find(self, token: str) -> TokenInfo | None:
        """What a presented token grants, or None."""
        return await self._db.read(find_token, token)

    async def find_id(self, token_id: str) -> TokenInfo | None:
        """What the token with this id grants, or None."""
        return await self._db.read(find_token_id, token_id)

    async def all(self) -> list[TokenInfo]:
        """Every token, newest first."""
        return await self._db.read(list_tokens)

    async def revoke(self, token_or_id: str) -> bool:
        """Revoke a token (by id or the token itself) and end its dashboard sessions; False
        when no active token matched."""
        return await self._db.write(self._revoke, token_id_of(token_or_id))
