"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "RELOAD_CHANNEL",
    "RUNS_CHANNEL",
    "execute_many",
    "insert_ignore",
    "notify",
    "upsert",
    "upsert_newer",
]

RUNS_CHANNEL = "jobhooks_runs"
"""Notified when runs are waiting (PostgreSQL): idle workers claim at once."""
RELOAD_CHANNEL = "jobhooks_reload"
"""Notified when a node reloaded its configuration (PostgreSQL): the others reload too."""


def notify(connection: Connection, channel: str, payload: str = "") -> None:
    """Queue a PostgreSQL notification, sent when the transaction commits (a no-op on
    SQLite, where every process shares the one writer's node)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_notify(%(channel)s, %(payload)s)", {"channel": channel, "payload": payload}
        )


def _insert(connection: Connection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(connection: Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING``."""
    return _insert(connection, table).on_conflict_do_nothing()


def upsert(connection: Connection, table: Table, key: str | list[str], update: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET`` the ``update`` columns."""
    statement = _insert(connection, table)
    return statement.on_conflict_do_update(
        index_elements=[key] if isinstance(key, str) else key,
        set_={name: statement.excluded[name] for name in update},
    )


def upsert_newer(
    connection: Connection, table: Table, keys: list[str], update: list[str], version: str
) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET`` the ``update`` columns, only where the
    new row's ``version`` column is greater than the stored one's."""
    statement = _insert(connection, table)
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={name: statement.excluded[name] for name in update},
        where=table.c[version] < statement.excluded[version],
    )


_COMPILED: dict[tuple[int, str], tuple[Any, dict[str, Any]]] = {}


def execute_many(connection: Connection, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute a Core statement for many parameter rows through the driver's executemany.

    The statement is compiled once per dialect and the rows go to the driver
    as they are (no per-row type processing), which keeps the hot writes lean.
    Statements given here must be module-level constants.
    """
    if not rows:
        return
    key = (id(statement), connection.dialect.name)
    cached = _COMPILED.get(key)
    if cached is None:
        compiled = statement.compile(dialect=connection.dialect)
        # Values written into the statement itself (such as status='running').
        fixed = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        cached = _COMPILED[key] = (compiled, fixed)
    compiled, fixed = cached
    if compiled.positional:
        order = compiled.positiontup
        params: Any = [tuple(row.get(name, fixed.get(name)) for name in order) for row in rows]
    else:
        names = list(compiled.binds)
        params = [{name: row.get(name, fixed.get(name)) for name in names} for row in rows]
    connection.exec_driver_sql(compiled.string, params)
