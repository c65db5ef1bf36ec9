"""Point a problem at the line of jobhooks.toml it comes from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_KEY_PARTS", "ConfigOrigin", "KeyPath"]

KeyPath = tuple[str | int, ...]

MAX_KEY_PARTS = 64
"""The most dotted parts a key or table name may have (jobhooks.toml needs four): TOML
readers take time in the square of the parts, so 50,000 of them take minutes."""

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_PARTS = re.compile(_PART)
_TOKEN = re.compile(r"""(?:"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[A-Za-z0-9_-]+)|[ \t]+|.""", re.S)


def _overlong_key(text: str) -> int | None:
    """The offset of a dotted key of more than :data:`MAX_KEY_PARTS` parts anywhere in
    ``text``, an inline table's too (the scan of lines does not look inside those); read
    token by token, in one pass."""
    if text.count(".") < MAX_KEY_PARTS:
        return None
    parts, start, after_part = 0, 0, False
    for token in _TOKEN.finditer(text):
        piece = token.group()
        if piece[0] in " \t":
            continue
        if piece == ".":
            if not after_part:
                parts = 0
            after_part = False
            continue
        if (piece[0] in "\"'" and len(piece) > 1) or piece[0] in _BARE:
            if after_part or parts == 0:
                parts, start = 0, token.start()
            parts += 1
            after_part = True
            continue
        if piece == "=" and after_part and parts > MAX_KEY_PARTS:
            return start
        parts, after_part = 0, False
    return None


_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return key[1:-1]
    return key


def _dotted(key: str) -> list[str]:
    """The parts of a dotted key or table name: ``a."b.c"`` is ``a`` and ``b.c``."""
    return [_unquote(part) for part in _PARTS.findall(key)]


@dataclass
class _Scan:
    """Where a line leaves the text: inside a multi-line string (its quotes), or inside
    brackets (an array or an inline table spread over lines)."""

    string: str | None = None
    depth: int = 0

    def read(self, line: str, *, header: bool = False) -> None:
        """Follow ``line`` to its end: quotes inside another string or in a comment do not
        count, nor a header's brackets."""
        at = 0
        while at < len(line):
            char = line[at]
            if self.string is None:
                if char == "#":
                    return
                if char in "\"'":
                    triple = line.startswith(char * 3, at)
                    self.string = char * 3 if triple else char
                    at += len(self.string)
                    continue
                if not header and char in "[{":
                    self.depth += 1
                elif not header and char in "]}":
                    self.depth = max(self.depth - 1, 0)
            elif self.string[0] == '"' and char == "\\":
                at += 2  # an escaped character (a basic string's only)
                continue
            elif line.startswith(self.string, at):
                at += len(self.string)
                self.string = None
                continue
            at += 1
        if self.string in ('"', "'"):
            self.string = None  # a one-line string ends with its line (or the file is wrong)


@dataclass(frozen=True)
class ConfigOrigin:
    """The file a configuration came from and the line of each table and key in it."""

    name: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    overlong: int | None = None
    """The line of the first key or table name with more than :data:`MAX_KEY_PARTS` parts."""

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
        scan = _Scan()
        overlong: int | None = None
        for number, line in enumerate(text.split("\n"), start=1):  # TOML's lines only
            if scan.string is not None or scan.depth:  # inside a string or a value's brackets
                scan.read(line)
                continue
            header = _HEADER.match(line)
            scan.read(line, header=header is not None)
            if header:
                parts = _dotted(header.group(2))
                if not parts:  # not a table name at all: the TOML reader says so
                    continue
                if len(parts) > MAX_KEY_PARTS:
                    overlong = overlong or number
                    continue
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
                    path = (*table, *_dotted(key.group(1)))
                    if len(path) > MAX_KEY_PARTS:
                        overlong = overlong or number
                        continue
                    for end in range(len(table) + 1, len(path) + 1):  # a.b = 1 makes a too
                        lines.setdefault(path[:end], number)
        if overlong is None:
            at = _overlong_key(text)
            if at is not None:
                overlong = text.count("\n", 0, at) + 1
        return cls(name=name, lines=lines, overlong=overlong)

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
