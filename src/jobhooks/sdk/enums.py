"""The platform's enumerations, with its integer values."""

from __future__ import annotations

import enum
from typing import Self

__all__ = ["JobResult", "OperationType", "normalise_name"]


def normalise_name(name: str) -> str:
    """Fold a name written in any spelling (``CreateAdd``, ``CREATE_ADD``, ``create-add``)."""
    return name.replace("_", "").replace("-", "").replace(" ", "").casefold()


class _PlatformEnum(enum.IntEnum):
    """An IntEnum that parses the platform's integers and its names in any spelling."""

    @classmethod
    def parse(cls, value: object) -> Self:
        """Return the member for an integer (``5.0`` is one, as in JSON), a string of ASCII
        digits or a name in any spelling.

        Raises ValueError naming the accepted values otherwise.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            # The spellings already met (a fleet reports the same few again and again).
            known = _lookup(cls, exact=True).get(value)
            if known is not None:
                return known  # type: ignore[return-value]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.lstrip("-").isdigit():
                try:
                    return cls(int(text))
                except ValueError:
                    pass
            else:
                member = _lookup(cls).get(normalise_name(text))
                if member is not None:
                    exact = _lookup(cls, exact=True)
                    if len(exact) < _MAX_SPELLINGS:
                        exact[value] = member
                    return member  # type: ignore[return-value]
        raise ValueError(f"unknown value {value!r}; expected one of {cls.choices()}")

    @classmethod
    def choices(cls) -> str:
        """The accepted values, for error messages: ``Unknown (0), InProcess (1), ...``."""
        return ", ".join(f"{member.display} ({member.value})" for member in cls)

    @property
    def display(self) -> str:
        """The platform's PascalCase name of this member (``CreateAdd``)."""
        name = self._name_
        shown = _DISPLAYS.get(name)
        if shown is None:
            shown = _DISPLAYS[name] = "".join(part.capitalize() for part in name.split("_"))
        return shown


_DISPLAYS: dict[str, str] = {}
"""PascalCase by member name (members of two enumerations with one value compare equal)."""
_LOOKUPS: dict[tuple[type[_PlatformEnum], bool], dict[str, _PlatformEnum]] = {}
_MAX_SPELLINGS = 256
"""Exact spellings remembered per enumeration (beyond them, names are folded each time)."""


def _lookup(cls: type[_PlatformEnum], exact: bool = False) -> dict[str, _PlatformEnum]:
    """Members by folded name, or (``exact``) by the spellings parsed so far."""
    table = _LOOKUPS.get((cls, exact))
    if table is None:
        table = {} if exact else {normalise_name(member.name): member for member in cls}
        _LOOKUPS[(cls, exact)] = table
    return table


class JobResult(_PlatformEnum):
    """Final result of an orchestrator job (``OrchestratorJobStatusJobResult``)."""

    UNKNOWN = 0
    IN_PROCESS = 1
    SUCCESS = 2
    WARNING = 3
    FAILURE = 4


class OperationType(_PlatformEnum):
    """Certificate-store operation of a job (``CertStoreOperationType``)."""

    UNKNOWN = 0
    INVENTORY = 1
    ADD = 2
    REMOVE = 3
    CREATE = 4
    CREATE_ADD = 5
    REENROLLMENT = 6
    DISCOVERY = 7
    SET_PASSWORD = 8
    FETCH_LOGS = 9
