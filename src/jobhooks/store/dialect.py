"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_ignore", "upsert"]


def _insert(connection: Connection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(connection: Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING``."""
    return _insert(connection, table).on_conflict_do_nothing()


def upsert(connection: Connection, table: Table, key: str, update: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET`` the ``update`` columns."""
    statement = _insert(connection, table)
    return statement.on_conflict_do_update(
        index_elements=[key], set_={name: statement.excluded[name] for name in update}
    )
