"""Point a problem at the line of jobhooks.toml it comes from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ConfigOrigin", "KeyPath"]

KeyPath = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_PARTS = re.compile(_PART)
_TOKEN = re.compile(r"""\\.|\"\"\"|'''|["'#]""")
"""What may change whether the rest of a line is in a string: an escaped character, the
quotes of a string, the start of a comment."""


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return key[1:-1]
    return key


def _dotted(key: str) -> list[str]:
    """The parts of a dotted key or table name: ``a."b.c"`` is ``a`` and ``b.c``."""
    return [_unquote(part) for part in _PARTS.findall(key)]


def _string_left_open(line: str, inside: str | None = None) -> str | None:
    """The quotes of the multi-line string still open at the end of ``line``, given those
    open at its start: quotes inside another string or in a comment do not count."""
    for token in _TOKEN.finditer(line):
        mark = token.group()
        if inside is None:
            if mark == "#":
                return None
            if mark[0] != "\\":
                inside = mark
        elif inside[0] == '"':
            if mark == '"""' or (mark == '"' and inside == '"'):
                inside = None
        else:
            # A literal string has no escapes: the character after a backslash counts.
            mark = mark.removeprefix("\\")
            if mark == inside or (inside == "'" and mark[0] == "'"):
                inside = None
    return inside if inside in ('"""', "'''") else None


@dataclass(frozen=True)
class ConfigOrigin:
    """The file a configuration came from and the line of each table and key in it."""

    name: str
    lines: dict[KeyPath, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> ConfigOrigin:
        """An origin for a configuration built in code rather than read from a file."""
        return cls(name="built-in configuration")

    @classmethod
    def scan(cls, name: str, text: str) -> ConfigOrigin:
        """Index the tables and keys of a TOML text by line (a light scan, not a parser)."""
        lines: dict[KeyPath, int] = {}
        table: KeyPath = ()
        counts: dict[str, int] = {}
        open_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if open_string is not None:  # a line inside a multi-line string
                open_string = _string_left_open(line, open_string)
                continue
            open_string = _string_left_open(line)
            header = _HEADER.match(line)
            if header:
                parts = _dotted(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(parts[0], 0)
                    counts[parts[0]] = index + 1
                    table = (parts[0], index, *parts[1:])
                    lines.setdefault((parts[0],), number)
                elif parts[0] in counts and len(parts) > 1:
                    table = (parts[0], counts[parts[0]] - 1, *parts[1:])
                else:
                    table = tuple(parts)
                lines.setdefault(table, number)
            else:
                key = _KEY.match(line)
                if key:
                    lines.setdefault((*table, *_dotted(key.group(1))), number)
        return cls(name=name, lines=lines)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest known table or key along ``path``."""
        for end in range(len(path), 0, -1):
            number = self.lines.get(tuple(path[:end]))
            if number is not None:
                return number
        return None

    def where(self, path: Sequence[str | int]) -> str:
        """``(jobhooks.toml line 14)``, or ``(jobhooks.toml)`` when the line is unknown."""
        number = self.line_of(path)
        return f"({self.name} line {number})" if number else f"({self.name})"
