"""Text from outside (job data, a configuration file) shown where characters can act: a
terminal, a log line, a comment in a file jobhooks writes.

The characters that would act instead of being shown (escape sequences, a carriage
return that overwrites a line, a line break that starts a forged log line, 8-bit
controls, marks that reorder the text around them, characters that show as nothing) are
written as escapes, as Python writes them (``\\n``, ``\\x1b``, ``\\u202e``); everything
else is left as it is.
"""

from __future__ import annotations

import functools
import re

__all__ = ["escape_controls", "has_controls", "json_without_controls"]

_CONTROLS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
"""Control characters (C0, DEL, C1), bidirectional marks and overrides, and the Unicode
line and paragraph separators."""
_ACTING = _CONTROLS + "\u00ad\u180e\u200b\u2060-\u2064\ufeff"
"""Those, and the characters that show as nothing at all (a zero width space, a word
joiner, a soft hyphen, a byte order mark): ``orch\\u200b01`` would look like ``orch01``.
(The zero width joiners, which join letters and emoji, are kept.)"""
_HAS_CONTROLS = re.compile(f"[{_CONTROLS}]")


def has_controls(text: str) -> bool:
    """True when ``text`` holds a control character or a direction mark (what a name
    must not hold; a soft hyphen or a Mongolian vowel separator may be part of one, and
    is only shown as an escape)."""
    return _HAS_CONTROLS.search(text) is not None


@functools.cache
def _acting(keep: str) -> re.Pattern[str]:
    kept = "".join(re.escape(char) for char in keep)
    return re.compile(f"(?![{kept}])[{_ACTING}]" if kept else f"[{_ACTING}]")


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every character that would act written as an escape, but those in
    ``keep`` (``"\\n\\t"`` where a line break and a tab are wanted)."""
    return _acting(keep).sub(_escaped, text)


def json_without_controls(document: str) -> str:
    """A JSON document (as ``json.dumps`` writes it, non-ASCII kept) with every character
    that would act written as a ``\\u`` escape: the same document to a parser, and plain
    text on a terminal or in a log. (``json.dumps`` escapes the C0 controls in strings
    itself; a line break left is the document's own indentation.)"""
    return _acting("\n").sub(lambda match: f"\\u{ord(match.group()):04x}", document)
