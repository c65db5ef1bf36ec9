"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    String,
    Table,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import ARRAY, TypeEngine

__all__ = [
    "RELOAD_CHANNEL",
    "RUNS_CHANNEL",
    "bind_list",
    "bind_pairs",
    "execute_many",
    "insert_ignore",
    "limit_lock_wait",
    "notify",
    "one_of",
    "pairs_from",
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


def limit_lock_wait(connection: Connection, seconds: float) -> None:
    """Make the open transaction give up waiting for a lock after ``seconds`` (PostgreSQL;
    SQLite's writer holds the only write lock)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'")


# A list bound as one parameter keeps a statement's text the same whatever the list's
# length: an expanding IN is rendered and compiled again for every length, which costs
# more than running the query for a batch. SQLite reads the list from JSON text
# (json_each), PostgreSQL takes an array.


def _array_of(kind: TypeEngine[Any]) -> ARRAY[Any]:
    # Text arrays whatever the column's length: a cast to varchar(n)[] would cut a longer
    # value short without a word, and then match a stored prefix of it.
    return ARRAY(postgresql.TEXT() if isinstance(kind, String) else kind)


def one_of(dialect: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """SQL: ``column`` equals a value of the list bound as ``name`` (see :func:`bind_list`)."""
    if dialect == "postgresql":
        return column == any_(cast(bindparam(name), _array_of(column.type)))
    return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(name))))


def pairs_from(
    dialect: str, name: str, columns: tuple[str, str], second: TypeEngine[Any]
) -> FromClause:
    """A FROM item of the pairs bound as ``name`` (see :func:`bind_pairs`), with the two
    ``columns``; the first values are text, the second of type ``second``."""
    first_name, second_name = columns
    if dialect == "postgresql":
        return (
            func.unnest(
                cast(bindparam(f"{name}_1"), _array_of(postgresql.TEXT())),
                cast(bindparam(f"{name}_2"), _array_of(second)),
            )
            .table_valued(first_name, second_name)
            .render_derived(name=name)
        )
    value: ColumnElement[str] = literal_column("value")
    return (
        select(
            func.json_extract(value, "$[0]").label(first_name),
            func.json_extract(value, "$[1]").label(second_name),
        )
        .select_from(func.json_each(bindparam(name)))
        .subquery(name)
    )


def bind_list(dialect: str, values: Iterable[Any]) -> Any:
    """The parameter value of a list for :func:`one_of`."""
    items = list(values)
    return items if dialect == "postgresql" else json.dumps(items)


def bind_pairs(dialect: str, name: str, pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """The parameters of the pairs for :func:`pairs_from` bound as ``name``."""
    items = list(pairs)
    if dialect == "postgresql":
        return {f"{name}_1": [a for a, _ in items], f"{name}_2": [b for _, b in items]}
    return {name: json.dumps(items)}


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
