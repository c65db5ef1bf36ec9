"""Listings fit the terminal without breaking an id, and show times as dates."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from jobhooks.cli.output import Column, listing, visible, when

RUN = "01a24535-9b04-7df9-bfc1-4ae76e8e2c66"
COLUMNS = (
    Column("run", "id"),
    Column("handler"),
    Column("status"),
    Column("finished (UTC)", "time"),
    Column("last error"),
)
ROWS = [(RUN, "page-on-call", "dead", when(1796457470.7), "RuntimeError: the relay refused it")]


def render(width: int) -> list[str]:
    out = io.StringIO()
    console = Console(width=width, file=out)
    console.print(listing(console, "Handler runs", COLUMNS, ROWS))
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_ids_stay_whole_and_nothing_is_cut(width: int) -> None:
    lines = render(width)
    assert any(RUN in line for line in lines), lines
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for word in ("page-on-call", "RuntimeError:", "2026-12-05", "07:57:50"):
        assert word in text


def test_a_wide_terminal_has_one_line_per_row() -> None:
    (row,) = [line for line in render(200) if RUN in line]
    assert "page-on-call" in row and "07:57:50" in row


def test_a_narrow_terminal_stacks_the_fields_beside_the_id() -> None:
    lines = render(80)
    (row,) = [line for line in lines if RUN in line]
    assert "handler: page-on-call" in row
    assert any("finished (UTC): 2026-12-05 07:57:50" in line for line in lines)
    (head,) = [line for line in lines if " run " in line]
    assert "details" in head, "every column has a heading"


@pytest.mark.parametrize("width", [30, 40, 50])
def test_a_terminal_too_narrow_for_fields_beside_the_id_has_them_under_it(width: int) -> None:
    lines = render(width)
    text = "\n".join(line.strip("│ ") for line in lines)

    assert max(len(line) for line in lines) <= width
    assert "handler: page-on-call" in text, lines
    assert "status: dead" in text and "last error: RuntimeError:" in text, lines


def test_when_is_a_utc_date() -> None:
    assert when(0) == "1970-01-01 00:00:00"
    assert when(None) == ""


def test_when_the_row_fits_no_word_is_broken() -> None:
    lines = render(120)
    (row,) = [line for line in lines if RUN in line]
    assert "page-on-call" in row and "dead" in row and "2026-12-05" in row
    text = "\n".join(lines)
    assert "RuntimeError:" in text and "refused" in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("done\rFAKE", "done\\rFAKE"),  # a carriage return would overwrite the line
        ("\x1b[2J", "\\x1b[2J"),
        ("\x9b2J", "\\x9b2J"),  # the 8-bit form of the same escape
        ("abc\u202edcba", "abc\\u202edcba"),  # reverses what follows it on screen
        ("two\nlines\tand a tab, é, 日本", "two\nlines\tand a tab, é, 日本"),
    ],
)
def test_characters_a_terminal_acts_on_are_shown_as_escapes(text: str, shown: str) -> None:
    assert visible(text) == shown
