"""Where the problems a handler's own ``setup()`` raises are in the file.

``setup()`` raises ``ValueError`` (or an ``ExceptionGroup`` of them, one per
problem); a message that starts ``property Name:`` is about that property. It
is placed at the registration's key when the registration gives it, and at
``[smtp]``'s key when the value is (or would be) ``[smtp]``'s, so a problem is
reported once, where it is to be fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from jobhooks.config.origin import KeyPath
from jobhooks.sdk.enums import normalise_name

__all__ = ["place_setup_problems"]

_PROPERTY = re.compile(r"^property (?P<name>\w+):? (?P<rest>.*)$", re.S)
_UNSET_IN_SMTP = re.compile(r"^not set here and \[smtp\] \w+ is empty$")


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _text(exc: BaseException) -> str:
    """``str(exc)``, or what can be said when its ``__str__`` raises (setup()'s own
    exception class may be broken: the registration is still refused, saying so)."""
    try:
        return str(exc)
    except BaseException as error:  # the handler's code: whatever it raises
        return f"(its message could not be read: {type(error).__name__} in __str__)"


def place_setup_problems(
    exc: BaseException,
    *,
    index: int,
    label: str,
    given: Mapping[str, str],
    from_smtp: Mapping[str, str],
    smtp_given: set[str],
    where: Callable[[KeyPath], str],
) -> list[str]:
    """One located problem per problem in what ``setup()`` raised.

    ``given`` maps the registration's property keys (normalised) to their spelling;
    ``from_smtp`` maps the properties ``[smtp]`` supplies (normalised) to their
    ``[smtp]`` setting, and ``smtp_given`` names the settings ``[smtp]`` sets.
    """
    placed: list[str] = []
    for leaf in _leaves(exc):
        text = _text(leaf)
        message = text if isinstance(leaf, ValueError) else f"{type(leaf).__name__}: {text}"
        match = _PROPERTY.match(message) if isinstance(leaf, ValueError) else None
        key = normalise_name(match["name"]) if match else None
        if key is not None and key in given:
            path: KeyPath = ("handlers", index, "properties", given[key])
            placed.append(f"{label}: {message} {where(path)}")
        elif match is not None and key is not None and key in from_smtp:
            setting = from_smtp[key]
            rest = match["rest"]
            if _UNSET_IN_SMTP.match(rest):
                rest = "is empty" if setting in smtp_given else "is not set"
            placed.append(
                f"[smtp] {setting}: {rest} ({label} takes its {match['name']} from here; "
                f"or give {match['name']} in its properties) {where(('smtp', setting))}"
            )
        else:
            placed.append(f"{label}: {message} {where(('handlers', index))}")
    return placed
