"""Tokens and direct database access for tests that drive a store in this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from jobhooks.store import Store
from jobhooks.store.engine import connect
from jobhooks.store.tokens import TokenInfo


def make_token(
    store: Store, role: str, agent_id: uuid.UUID | None = None, label: str | None = None
) -> str:
    """A new token of ``role`` (through the store, as ``jobhooks token create`` does)."""
    return make_token_info(store, role, agent_id, label)[0]


def make_token_info(
    store: Store, role: str, agent_id: uuid.UUID | None = None, label: str | None = None
) -> tuple[str, TokenInfo]:
    """A new token and what it grants."""
    return asyncio.run(store.tokens.create(role, agent_id, label))


def revoke(store: Store, token_or_id: str) -> bool:
    """Revoke a token, as ``jobhooks token revoke`` does."""
    return asyncio.run(store.tokens.revoke(token_or_id))


@contextmanager
def database(store: Store) -> Iterator[Engine]:
    """An engine of the test's own on the store's database, to look at (or seed) its rows."""
    engine = connect(store.url, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()
