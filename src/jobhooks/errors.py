"""Every exception jobhooks raises on purpose.

The tree::

    JobhooksError
    ├── ConfigError            jobhooks.toml (or a handler registration) is invalid
    ├── ContextError           a completion report does not describe a valid job
    ├── ReportRejected         a check-in cannot be taken as sent (malformed, invalid, foreign)
    ├── SecretError            a Secret reference cannot be resolved
    ├── PlatformNotConfigured  a handler used context.client without a [platform] url
    ├── PlatformError          the platform's API failed a request or answered something unusable
    │   ├── PlatformAuthError  the platform (or its token endpoint) refused the credentials
    │   ├── PlatformBusy       it answered 408, 425, 429 or 5xx: worth asking again later
    │   └── CapabilityBroken   the platform stopped honouring a query it had accepted
    ├── LeaseLost              another node took over polling the platform's job history
    └── StoreError             the database cannot do what was asked
        ├── SchemaOutOfDate    the database schema is behind this version of jobhooks
        └── DatabaseLost       the database file was deleted or replaced while in use

Messages say what is wrong, where, and what to do, so the CLI can print them
as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CapabilityBroken",
    "CommitUnconfirmed",
    "ConfigError",
    "ContextError",
    "DatabaseLost",
    "DatabaseUnreachable",
    "FieldProblem",
    "JobhooksError",
    "LeaseLost",
    "PlatformAuthError",
    "PlatformBusy",
    "PlatformError",
    "PlatformNotConfigured",
    "ReportRejected",
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


class ReportRejected(JobhooksError):
    """Raised when a check-in cannot be taken as it was sent; nothing was stored.

    ``reason`` says how: ``malformed`` (the body is not a JSON object, or a header
    is not usable), ``invalid`` (fields are wrong: ``problems`` lists each) or
    ``forbidden`` (the report names another agent than the token's).
    """

    def __init__(self, reason: str, message: str, problems: Sequence[FieldProblem] = ()) -> None:
        self.reason = reason
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        super().__init__(message)


class SecretError(JobhooksError, ValueError):
    """Raised when a ``env:`` or ``file:`` secret reference cannot be resolved."""


class PlatformNotConfigured(JobhooksError):
    """Raised when a handler calls the platform API but ``[platform] url`` is not set."""


class PlatformError(JobhooksError):
    """Raised when the platform's API cannot be read: unreachable, slow, an error status,
    or an answer that is not what its documentation describes.

    ``kind`` names the failure for metrics and logs: ``unreachable``, ``timeout``,
    ``unauthorized``, ``forbidden``, ``server_error``, ``client_error`` or ``bad_response``.
    """

    def __init__(self, message: str, kind: str = "bad_response", status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(message)


class PlatformBusy(PlatformError):
    """Raised when the platform (or its token endpoint) answers 408, 425, 429 or a 5xx: it
    failed now, which says nothing about the request, so the same request is worth sending
    again later. ``retry_after`` is the wait its ``Retry-After`` header asked for (seconds,
    at most ten minutes), or None."""

    def __init__(
        self, message: str, kind: str, status: int | None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, kind=kind, status=status)
        self.retry_after = retry_after


class PlatformAuthError(PlatformError):
    """Raised when the platform answers 401, or its OAuth token endpoint refuses the client;
    the message names the credential to check."""


class CapabilityBroken(PlatformError):
    """Raised by the poller when the platform stopped honouring a filter or an order it
    accepted when probed; ``capability`` (``id`` or ``date``) is then distrusted and the
    history read another way."""

    def __init__(self, message: str, capability: str) -> None:
        super().__init__(message, kind="bad_response")
        self.capability = capability


class LeaseLost(JobhooksError):
    """Raised when another node took the poller's lease (this one stalled past it): this
    node stops polling and writes nothing more."""


class StoreError(JobhooksError):
    """Raised when the database cannot be reached or cannot do what was asked."""


class CommitUnconfirmed(StoreError):
    """Raised when a write could not be confirmed: the database took its COMMIT but the
    answer never came, and storing it again failed too (and PostgreSQL, when asked, could
    not say it was rolled back). It may have been stored; written again with the same
    identity (an Idempotency-Key), it is stored once."""


class DatabaseUnreachable(StoreError):
    """Raised without an attempt to connect: an attempt to reach the database server took
    long and failed, and none since has reached it (a server that does not answer).
    jobhooks keeps trying in the background and connects again once it answers."""

    def __init__(self, cause: str) -> None:
        super().__init__(
            f"{cause}; jobhooks keeps trying in the background and connects again once it answers"
        )
        self.cause = cause
        """Why the last attempt failed (what ``/readyz`` says meanwhile)."""


class SchemaOutOfDate(StoreError):
    """Raised when the database schema is behind this version; run ``jobhooks db upgrade``."""


class DatabaseLost(StoreError):
    """Raised once the SQLite database file was deleted or replaced under a running process:
    what it writes from then on would be lost, so it refuses every write and read until it
    is restarted (which opens, or creates, the file now at the path)."""
