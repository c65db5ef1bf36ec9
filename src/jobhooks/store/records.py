"""What crosses the store's boundary: plain, immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum, nonmember
from typing import Any

__all__ = [
    "CheckinReceipt",
    "ClaimedRun",
    "NewCompletion",
    "PlannedRun",
    "RunOutcome",
    "RunReceipt",
    "RunStatus",
]


class RunStatus(StrEnum):
    """The states of a handler run.

    ``running`` is not stored: a pending or failed run that a worker holds
    under a lease is running. Deriving it saves a write per run.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"

    ALL = nonmember(("pending", "running", "succeeded", "failed", "dead"))
    OPEN = nonmember(("pending", "failed"))
    """Stored statuses of a run that is not finished (waiting, or held by a worker)."""

    @staticmethod
    def shown(stored: str, worker: str | None) -> RunStatus:
        """The status as operators see it."""
        if worker is not None and stored in RunStatus.OPEN:
            return RunStatus.RUNNING
        return RunStatus(stored)


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A handler that matched a completion, with what its run needs to be created."""

    handler: str
    max_attempts: int
    lease: float
    """Seconds a worker may hold the run (the handler's timeout plus a grace period)."""


@dataclass(frozen=True, slots=True)
class NewCompletion:
    """A validated completion report, ready to store."""

    fields: dict[str, Any]
    """Context fields in snake_case, parsed (UUIDs, enums, datetimes)."""
    runs: tuple[PlannedRun, ...]
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RunReceipt:
    """A handler run as the check-in API reports it."""

    id: str
    handler: str
    status: str


@dataclass(slots=True)
class CheckinReceipt:
    """What the check-in API answers: the completion's id, whether it repeats one, its runs."""

    id: str
    duplicate: bool
    runs: list[RunReceipt]
    current_retry_count: int = 0
    handed_off: list[ClaimedRun] = field(default_factory=list)
    """Runs leased to this process's worker in the same transaction."""


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run a worker holds under a lease, with the completion it is about."""

    id: str
    handler: str
    completion_id: str
    attempt: int
    """Attempt number in the current cycle (1 for the first)."""
    number: int
    """Attempt number over the run's whole life, for the attempt history."""
    max_attempts: int
    fields: dict[str, Any]
    worker: str
    created_at: float = 0.0
    """When the run was stored (its dispatch latency is measured from there)."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """The end of one attempt, as a worker reports it."""

    run_id: str
    worker: str
    number: int
    status: RunStatus
    """succeeded, failed (a retry is due at ``due_at``) or dead."""
    due_at: float
    started_at: float
    finished_at: float
    error: str | None = None
    traceback: str | None = None
