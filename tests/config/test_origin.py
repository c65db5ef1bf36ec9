"""A problem points at the line it comes from, whatever the strings before it hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobhooks.config.origin import ConfigOrigin

TRIPLE_SINGLE = "'" * 3
TRIPLE_DOUBLE = '"' * 3
AFTER_STRINGS = "\n".join(
    [
        "[[handlers]]",
        'name = "first"',
        f'level = "it{TRIPLE_SINGLE} s"',
        f"note = 'a {TRIPLE_DOUBLE} b' # and {TRIPLE_DOUBLE} in a comment",
        "path = 'C:\\logs\\'",
        f"text = {TRIPLE_DOUBLE}",
        'type = "not a key: inside a string"',
        "[not.a.table]",
        TRIPLE_DOUBLE,
        "[handlers.properties]",
        '"Smtp.Port" = 25',
        "plain.dotted = 1",
        "",
        "[[handlers]]",
        'name = "second"',
        'type = "nosuchtype"',
        "",
    ]
)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("handlers", 0, "level"), 3),
        (("handlers", 0, "path"), 5),
        (("handlers", 0, "text"), 6),
        (("handlers", 0, "properties"), 10),
        (("handlers", 0, "properties", "Smtp.Port"), 11),
        (("handlers", 0, "properties", "plain", "dotted"), 12),
        (("handlers", 1, "name"), 15),
        (("handlers", 1, "type"), 16),
    ],
)
def test_keys_are_found_on_their_lines(path: tuple[str | int, ...], line: int) -> None:
    origin = ConfigOrigin.scan("jobhooks.toml", AFTER_STRINGS)

    assert origin.line_of(path) == line


def test_what_a_string_holds_is_not_taken_for_keys_or_tables() -> None:
    origin = ConfigOrigin.scan("jobhooks.toml", AFTER_STRINGS)

    assert ("handlers", 0, "type") not in origin.lines
    assert ("not", "a", "table") not in origin.lines


def test_a_problem_after_triple_quotes_in_a_string_names_its_own_line(
    cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobhooks.toml"
    first = f'[[handlers]]\nname = "it{TRIPLE_SINGLE}s"\ntype = "log"\njob_types = "*"\n\n'
    path.write_text(first + '[[handlers]]\nname = "second"\ntype = "nosuchtype"\n', "utf-8")

    result = cli("validate", "--config", str(path))

    assert result.exit_code == 1
    (problem,) = [line for line in result.stderr.splitlines() if "nosuchtype" in line]
    assert problem.endswith("line 8)"), problem


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        # A literal string has no escapes: its backslash does not hide the closing quotes.
        (f"a = {TRIPLE_SINGLE}C:\\{TRIPLE_SINGLE}\nb = 1", ("b",), 2),
        # TOML's lines end at a line feed only, not at the other breaks Python knows.
        ("# one\u2028two\u0085three\x0cfour\nb = 1", ("b",), 2),
        ('a = "x\u0085y"\r\nb = 1\r\n', ("b",), 2),
        # An array over several lines: its inner brackets are not table headers.
        (
            '[[handlers]]\ngroup_by = [\n  ["client_machine"],\n]\nname = "x"',
            ("handlers", 0, "name"),
            5,
        ),
        ("g = [\n  { a = 1 },\n]\n[x]\ny = 1", ("x", "y"), 5),
        # A dotted key makes its tables where it stands.
        ("[server]\nlisten = 'x'\n\nsmtp.host = 1", ("server", "smtp"), 4),
    ],
)
def test_lines_as_toml_counts_them(text: str, path: tuple[str | int, ...], line: int) -> None:
    assert ConfigOrigin.scan("jobhooks.toml", text).line_of(path) == line
