"""Every exception jobhooks raises on purpose.

The tree::

    JobhooksError
    ├── ConfigError            jobhooks.toml (or a handler registration) is invalid
    ├── ContextError           a completion report does not describe a valid job
    ├── SecretError            a Secret reference cannot be resolved
    ├── PlatformNotConfigured  a handler used context.client without a [platform] url
    └── StoreError             the database cannot do what was asked
        └── SchemaOutOfDate    the database schema is behind this version of jobhooks

Messages say what is wrong, where, and what to do, so the CLI can print them
as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ContextError",
    "FieldProblem",
    "JobhooksError",
    "PlatformNotConfigured",
    "SchemaOutOfDate",
    "SecretError",
    "StoreError",
]


class JobhooksError(Exception):
    """Root of every error jobhooks raises on purpose."""


class ConfigError(JobhooksError):
    """Raised when a configuration cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''}{where}:\n{lines}")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field of a completion report: which field and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ContextError(JobhooksError, ValueError):
    """Raised when a completion report (JSON or dict) is not a valid job context.

    ``problems`` holds one :class:`FieldProblem` per invalid field.
    """

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


class SecretError(JobhooksError, ValueError):
    """Raised when a ``env:`` or ``file:`` secret reference cannot be resolved."""


class PlatformNotConfigured(JobhooksError):
    """Raised when a handler calls the platform API but ``[platform] url`` is not set."""


class StoreError(JobhooksError):
    """Raised when the database cannot be reached or cannot do what was asked."""


class SchemaOutOfDate(StoreError):
    """Raised when the database schema is behind this version; run ``jobhooks db upgrade``."""
