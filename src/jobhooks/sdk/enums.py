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
                    return member  # type: ignore[return-value]
        raise ValueError(f"unknown value {value!r}; expected one of {cls.choices()}")

    @classmethod
    def choices(cls) -> str:
        """The accepted values, for error messages: ``Unknown (0), InProcess (1), ...``."""
        return ", ".join(f"{member.display} ({member.value})" for member in cls)

    @property
    def display(self) -> str:
        """The platform's PascalCase name of this member (``CreateAdd``)."""
        return "".join(part.capitalize() for part in self.name.split("_"))


_LOOKUPS: dict[type[_PlatformEnum], dict[str, _PlatformEnum]] = {}


def _lookup(cls: type[_PlatformEnum]) -> dict[str, _PlatformEnum]:
    table = _LOOKUPS.get(cls)
    if table is None:
        table = {normalise_name(member.name): member for member in cls}
        _LOOKUPS[cls] = table
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
