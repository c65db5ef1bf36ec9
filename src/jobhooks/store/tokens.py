"""API tokens: random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from jobhooks.store.sessions import end_sessions_of_token
from jobhooks.store.tables import tokens

__all__ = [
    "ROLES",
    "TokenInfo",
    "create_token",
    "find_token",
    "find_token_id",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

ROLES = ("agent", "admin", "viewer")
_PREFIX = "jh_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token grants: a role, and for an agent token the one agent it may report for."""

    id: str
    role: str
    agent_id: uuid.UUID | None
    label: str | None
    created_at: float
    revoked_at: float | None


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    engine: Engine, role: str, agent_id: uuid.UUID | None = None, label: str | None = None
) -> tuple[str, TokenInfo]:
    """Make a token; returns it (the only time it is known) and what it grants."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "agent") != (agent_id is not None):
        raise ValueError("an agent token needs an agent id, and only an agent token has one")
    token_id = secrets.token_hex(6)
    token = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    info = TokenInfo(token_id, role, agent_id, label, time.time(), None)
    with engine.begin() as connection:
        connection.execute(
            tokens.insert().values(
                id=token_id,
                hash=hash_token(token),
                role=role,
                agent_id=str(agent_id) if agent_id else None,
                label=label,
                created_at=info.created_at,
            )
        )
    return token, info


def _info(row: object) -> TokenInfo:
    agent = getattr(row, "agent_id", None)
    return TokenInfo(
        id=row.id,  # type: ignore[attr-defined]
        role=row.role,  # type: ignore[attr-defined]
        agent_id=uuid.UUID(agent) if agent else None,
        label=row.label,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
    )


def find_token(engine: Engine, token: str) -> TokenInfo | None:
    """What a presented token grants, or None if it is unknown or revoked."""
    with engine.connect() as connection:
        row = connection.execute(
            select(tokens).where(tokens.c.hash == hash_token(token), tokens.c.revoked_at.is_(None))
        ).first()
    return _info(row) if row is not None else None


def find_token_id(engine: Engine, token_id: str) -> TokenInfo | None:
    """What the token with this id grants, or None if it is unknown or revoked."""
    with engine.connect() as connection:
        row = connection.execute(
            select(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        ).first()
    return _info(row) if row is not None else None


def list_tokens(engine: Engine) -> list[TokenInfo]:
    """Every token, newest first (never the tokens themselves)."""
    with engine.connect() as connection:
        rows = connection.execute(select(tokens).order_by(tokens.c.created_at.desc())).all()
    return [_info(row) for row in rows]


def revoke_token(engine: Engine, token_id: str) -> bool:
    """Revoke a token by id (or by the token itself); False when none matched."""
    if token_id.startswith(_PREFIX):
        token_id = token_id[len(_PREFIX) :].split("_", 1)[0]
    now = time.time()
    with engine.begin() as connection:
        result = connection.execute(
            update(tokens)
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        end_sessions_of_token(connection, token_id, now)
    return result.rowcount > 0
