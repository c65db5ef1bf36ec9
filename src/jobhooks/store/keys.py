"""Random keys kept in the database, so every node sharing it signs and checks alike."""

from __future__ import annotations

import secrets
import time

from sqlalchemy import Engine, select

from jobhooks.store.dialect import insert_ignore
from jobhooks.store.tables import signing_keys

__all__ = ["signing_key"]


def signing_key(engine: Engine, name: str) -> bytes:
    """The key called ``name`` (32 random bytes), made on first use.

    Deleting its row makes a new one, which invalidates what the old one signed.
    """
    query = select(signing_keys.c.secret).where(signing_keys.c.name == name)
    with engine.connect() as connection:
        secret = connection.execute(query).scalar()
    if secret is None:
        with engine.begin() as connection:
            connection.execute(
                insert_ignore(connection, signing_keys).values(
                    name=name, secret=secrets.token_hex(32), created_at=time.time()
                )
            )
            secret = connection.execute(query).scalar_one()
    return bytes.fromhex(secret)
