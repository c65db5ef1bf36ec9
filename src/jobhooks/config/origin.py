"""Point a problem at the line of jobhooks.toml it comes from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ConfigOrigin", "KeyPath"]

KeyPath = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _unquote(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return key[1:-1]
    return key


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
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            quotes = line.count('"""') + line.count("'''")
            if in_multiline:
                in_multiline = quotes % 2 == 0
                continue
            header = _HEADER.match(line)
            if header:
                parts = [_unquote(part) for part in header.group(2).split(".")]
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
                    path = (*table, *(_unquote(p) for p in key.group(1).split(".")))
                    lines.setdefault(path, number)
            if quotes % 2 == 1:
                in_multiline = True
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
