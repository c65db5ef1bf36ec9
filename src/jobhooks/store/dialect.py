"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
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


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _columns(names: str | Sequence[str]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


# The statements are built once per dialect and kept for good: building one (its
# ``excluded`` columns especially) costs more than executing it for a batch of rows, and
# execute_many knows a statement by its id (the code asks for a fixed few).
@cache
def _insert_ignore(dialect: str, table: Table) -> Any:
    return _insert(dialect, table).on_conflict_do_nothing()


@cache
def _upsert(
    dialect: str, table: Table, keys: tuple[str, ...], update: tuple[str, ...], version: str | None
) -> Any:
    statement = _insert(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in update},
        where=None if version is None else table.c[version] < statement.excluded[version],
    )


def insert_ignore(connection: Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING``."""
    return _insert_ignore(connection.dialect.name, table)


def upsert(
    connection: Connection, table: Table, key: str | Sequence[str], update: Sequence[str]
) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET`` the ``update`` columns."""
    return _upsert(connection.dialect.name, table, _columns(key), _columns(update), None)


def upsert_newer(
    connection: Connection, table: Table, keys: Sequence[str], update: Sequence[str], version: str
) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET`` the ``update`` columns, only where the
    new row's ``version`` column is greater than the stored one's."""
    return _upsert(connection.dialect.name, table, _columns(keys), _columns(update), version)


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    pick: Callable[[Mapping[str, Any]], Any]
    positional: bool


_COMPILED: dict[tuple[int, str], _Compiled] = {}


def _compile(connection: Connection, statement: Any) -> _Compiled:
    compiled = statement.compile(dialect=connection.dialect)
    names = tuple(compiled.positiontup if compiled.positional else compiled.binds)
    # Values written into the statement itself (such as status='running').
    fixed = {
        name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
    }
    pick = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    return _Compiled(
        compiled.string, names, {n: fixed.get(n) for n in names}, pick, compiled.positional
    )


def execute_many(connection: Connection, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute a Core statement for many parameter rows through the driver's executemany.

    The statement is compiled once per dialect and the rows go to the driver
    as they are (no per-row type processing), which keeps the hot writes lean.
    Statements given here must be module-level constants (or kept, as
    :func:`upsert` keeps its own). A column a row leaves out takes the value the
    statement gives it, else NULL.
    """
    if not rows:
        return
    key = (id(statement), connection.dialect.name)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _compile(connection, statement)
    pick, defaults = compiled.pick, compiled.defaults
    try:
        values = [pick(row) for row in rows]
    except KeyError:  # some rows leave columns out
        values = [pick({**defaults, **row}) for row in rows]
    params: Any = values
    if not compiled.positional:
        params = [dict(zip(compiled.names, value, strict=True)) for value in values]
    connection.exec_driver_sql(compiled.sql, params)
