"""Random keys kept in the database, so every node sharing it signs and checks alike."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import Connection, select

from jobhooks.store.dialect import insert_ignore
from jobhooks.store.tables import signing_keys as signing_keys_table

__all__ = ["signing_keys"]


def signing_keys(connection: Connection, names: Sequence[str], now: float) -> list[bytes]:
    """The keys called ``names`` (32 random bytes each), each made on first use.

    Deleting a key's row makes a new one, which invalidates what the old one signed.
    """
    found = []
    for name in names:
        query = select(signing_keys_table.c.secret).where(signing_keys_table.c.name == name)
        secret = connection.execute(query).scalar()
        if secret is None:
            connection.execute(
                insert_ignore(connection, signing_keys_table).values(
                    name=name, secret=secrets.token_hex(32), created_at=now
                )
            )
            secret = connection.execute(query).scalar_one()
        found.append(bytes.fromhex(secret))
    return found
