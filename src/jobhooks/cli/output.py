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
from rich.table import Table
from rich.text import Text

from jobhooks.escapes import escape_controls, json_without_controls

__all__ = ["Column", "JsonOption", "TerminalConsole", "listing", "print_json", "visible", "when"]

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON for scripts instead of a table (the HTTP API's objects; times in "
        "UTC seconds since the epoch, as the API gives them).",
    ),
]


def visible(text: str) -> str:
    """``text`` as a terminal should show it: line breaks and tabs kept, every other
    character a terminal would act on written as an escape (``\\x1b``)."""
    return escape_controls(text, keep="\n\t")


class TerminalConsole(Console):
    """A console for text from outside (job data, names from a configuration file): shown
    as it is. Markup (``[bold]``) and emoji codes only where a call asks for them
    (``markup=True``), and control characters as escapes (see :func:`visible`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        """Every string this console prints or lays out in a table passes here."""
        return super().render_str(visible(text), **options)


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
    document = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    typer.echo(json_without_controls(document))


def when(moment: float | None) -> str:
    """A time from the API (UTC seconds since the epoch) as a UTC date: ``2026-12-05 07:57:50``."""
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


_LONGEST_WORD = 24
"""Text columns are at least as wide as their longest word, up to this many characters."""


def _width_range(column: Column, cells: Sequence[str]) -> tuple[int, int]:
    """The narrowest a column may be without breaking a word (an id, a date), and the
    width that shows every cell on one line."""
    texts = [column.header, *cells]
    longest_line = max(len(line) for text in texts for line in [*text.splitlines(), ""])
    if column.kind == "id":
        width = max(column.width, longest_line)
        return width, width
    words = [word for text in texts for word in text.split()]
    narrowest = min(max((len(word) for word in words), default=1), _LONGEST_WORD)
    if column.kind == "time":
        narrowest = max(narrowest, 10)  # the date whole; the time may go under it
    return narrowest, max(narrowest, longest_line)


def _widths(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], available: int
) -> list[int] | None:
    """Column widths that fit ``available`` characters without breaking a word, spare room
    shared in proportion to what each column would take more; None when none fit."""
    ranges = [
        _width_range(column, [row[index] for row in rows]) for index, column in enumerate(columns)
    ]
    room = available - (3 * len(columns) + 1)  # a border and a space each side of a cell
    narrowest = [low for low, _high in ranges]
    if sum(narrowest) > room:
        return None
    wanted = [high - low for low, high in ranges]
    spare = room - sum(narrowest)
    if sum(wanted) <= spare:
        return [high for _low, high in ranges]
    return [low + want * spare // sum(wanted) for low, want in zip(narrowest, wanted, strict=True)]


def _wide(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], widths: Sequence[int]
) -> Table:
    table = Table(title=title, title_justify="left")
    for column, width in zip(columns, widths, strict=True):
        no_wrap = column.kind == "id"
        table.add_column(column.header, width=width, no_wrap=no_wrap, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _stacked(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], available: int
) -> Table:
    """The first column as it is; every other field on a line of its own beside it, or
    under it when the terminal leaves no room for a word beside it."""
    table = Table(title=title, title_justify="left")
    first = columns[0]
    under = first.kind == "id" and available - first.width - 7 < _LONGEST_WORD
    if under:
        table.add_column(first.header, overflow="fold")
    elif first.kind == "id":
        table.add_column(first.header, no_wrap=True, overflow="ignore", min_width=first.width)
    else:
        table.add_column(first.header, overflow="fold")
    if not under:
        table.add_column("details", overflow="fold")
    for position, row in enumerate(rows):
        fields = [
            f"{column.header}: {value}"
            for column, value in zip(columns[1:], row[1:], strict=True)
            if value
        ]
        cells = ["\n".join([row[0], *fields])] if under else [row[0], "\n".join(fields)]
        table.add_row(*cells, end_section=position < len(rows) - 1)
    return table


def listing(
    console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]
) -> Table:
    """A table of ``rows`` under ``columns`` (the first one usually an id), laid out to fit
    ``console``: one row per line when every column fits without breaking a word, else
    each row's other fields stacked beside its first."""
    widths = _widths(columns, rows, console.width)
    if widths is None and len(columns) > 2:
        return _stacked(title, columns, rows, console.width)
    if widths is None:
        widths = [
            _width_range(column, [row[index] for row in rows])[0]
            for index, column in enumerate(columns)
        ]
    return _wide(title, columns, rows, widths)
