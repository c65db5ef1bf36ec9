"""How the listing verbs print: tables for people, JSON (``--json``) for scripts.

In tables, ids and GUIDs are never broken across lines (a copied id must work in
``replay``), and times are UTC dates, never seconds since the epoch. A listing
too wide for the terminal keeps its id column and stacks the other fields
beside it, one per line, rather than cutting words or the table's right edge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

__all__ = ["Column", "JsonOption", "listing", "print_json", "when"]

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON for scripts instead of a table (the HTTP API's objects; times in "
        "UTC seconds since the epoch, as the API gives them).",
    ),
]

UUID_WIDTH = 36
"""A UUID's length: the ids of completions and runs, and job type GUIDs."""


@dataclass(frozen=True)
class Column:
    """One column of a listing: ``id`` (never wrapped), ``time`` (a :func:`when` date) or
    ``text`` (folded to fit)."""

    header: str
    kind: Literal["id", "time", "text"] = "text"
    width: int = UUID_WIDTH
    """For an ``id`` column: the width of its ids."""


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout, alone (messages go to stderr)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def when(moment: float | None) -> str:
    """A time from the API (UTC seconds since the epoch) as a UTC date: ``2026-12-05 07:57:50``."""
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _add(table: Table, column: Column) -> None:
    if column.kind == "id":
        table.add_column(column.header, no_wrap=True, overflow="ignore", min_width=column.width)
    elif column.kind == "time":
        # Ten columns keep the date whole; the time goes under it when space is short.
        table.add_column(column.header, overflow="fold", min_width=10)
    else:
        table.add_column(column.header, overflow="fold")


def _wide(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        _add(table, column)
    for row in rows:
        table.add_row(*row)
    return table


def _stacked(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    """The first column as it is; every other field on a line of its own beside it."""
    table = Table(title=title, title_justify="left")
    _add(table, columns[0])
    table.add_column("", overflow="fold")
    for position, row in enumerate(rows):
        fields = [
            f"{column.header}: {value}"
            for column, value in zip(columns[1:], row[1:], strict=True)
            if value
        ]
        table.add_row(row[0], "\n".join(fields), end_section=position < len(rows) - 1)
    return table


def listing(
    console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]
) -> Table:
    """A table of ``rows`` under ``columns`` (the first one usually an id), laid out to fit
    ``console``: one row per line when every word fits, else stacked."""
    wide = _wide(title, columns, rows)
    unbounded = console.options.update_width(1_000_000)  # else the measure is clamped
    needed = Measurement.get(console, unbounded, wide).minimum
    if needed <= console.width or len(columns) < 3:
        return wide
    return _stacked(title, columns, rows)
