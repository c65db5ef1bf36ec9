"""What crosses the store's boundary: plain, immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum, nonmember
from typing import Any, Protocol

from jobhooks.sdk.enums import JobResult
from jobhooks.sdk.trigger import Trigger
from jobhooks.store.ids import new_id

__all__ = [
    "CheckinReceipt",
    "ClaimedRun",
    "DigestPlan",
    "JobMoment",
    "NewCompletion",
    "PlannedRun",
    "Rule",
    "RuleDecision",
    "RunOutcome",
    "RunReceipt",
    "RunStatus",
]


class RunStatus(StrEnum):
    """The states of a handler run.

    ``running`` is not stored: a pending or failed run that a worker holds
    under a lease is running. Deriving it saves a write per run.
    """

    COLLECTING = "collecting"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    HELD = "held"
    """Waiting for its registration to be valid again: quarantined when the run was made,
    or removed (or disabled) by a reload before the run started."""

    ALL = nonmember(("collecting", "pending", "running", "succeeded", "failed", "dead", "held"))
    OPEN = nonmember(("pending", "failed"))
    """Stored statuses of a run that is not finished (waiting, or held by a worker)."""
    NOT_REPLAYABLE = nonmember(("collecting", "pending", "running", "held"))
    """Statuses a replay leaves as they are: a run yet to start or running, a digest still
    collecting, a run held for its registration."""
    UNFINISHED = nonmember(("collecting", "pending", "failed"))
    """Stored statuses of a run that has yet to run or to succeed: a digest still
    collecting (due when it closes) too."""

    @staticmethod
    def shown(stored: str, worker: str | None) -> RunStatus:
        """The status as operators see it."""
        if worker is not None and stored in RunStatus.OPEN:
            return RunStatus.RUNNING
        return RunStatus(stored)


@dataclass(frozen=True, slots=True)
class JobMoment:
    """A completion's place in its job's history, as the transaction storing it sees it:
    what a registration's rule decides on."""

    result: JobResult
    before: int
    """The job's consecutive failures before this completion."""
    streak: int
    """Its consecutive failures with this completion (0 once a success or a warning ended
    them; Unknown and InProcess leave them as they were)."""
    since: float | None
    """When the streak began: the ongoing one, or the one this completion ended."""
    at: float
    """When the completion was stored."""
    fired_at: float | None
    """When this registration last fired for the job's ongoing streak (None if it has not)."""
    job_type: str
    job_id: str
    client_machine: str


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """Whether a registration runs for a completion, and why."""

    trigger: Trigger | None
    """The trigger it runs for; None when it does not run."""
    note: str | None = None
    """Why it does not run (for the completion's detail)."""
    marks: bool = False
    """This run counts as the registration having fired for the job's ongoing streak."""


class Rule(Protocol):
    """A registration's ``when``: decides, in the transaction that stores a completion,
    whether it runs (intake implements it; the store only asks)."""

    @property
    def stateful(self) -> bool:
        """True when it needs :attr:`JobMoment.fired_at`."""
        ...

    def decide(self, moment: JobMoment) -> RuleDecision:
        """Run or not, for this completion."""
        ...


@dataclass(frozen=True, slots=True)
class DigestPlan:
    """A registration's digests as the store keeps them (see ``group_by``)."""

    fields: tuple[str, ...]
    """The context fields whose values make a group (none: one group)."""
    wait: float
    """Seconds a digest collects after its first completion."""
    most: int
    """The most completions one digest holds."""


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A handler that matched a completion, with what its run needs to be created."""

    handler: str
    max_attempts: int
    lease: float
    """Seconds a worker may hold the run (the handler's timeout plus a grace period)."""
    rule: Rule | None = None
    """When it runs; None runs it for every completion."""
    digest: DigestPlan | None = None
    """Collect what fires into one run per group; None runs once per completion."""
    held: bool = False
    """Its registration is quarantined: the run waits, ``held``, until it is fixed."""


@dataclass(frozen=True, slots=True)
class NewCompletion:
    """A validated completion report, ready to store."""

    fields: dict[str, Any]
    """Context fields in snake_case, parsed (UUIDs, enums, datetimes)."""
    runs: tuple[PlannedRun, ...]
    idempotency_key: str | None = None
    id: str = field(default_factory=new_id)
    """The id it is stored under, chosen once: written again after a failure that left
    unclear whether it was stored, it is found rather than stored twice."""


@dataclass(frozen=True, slots=True)
class RunReceipt:
    """A handler run as the check-in API reports it."""

    id: str
    handler: str
    status: str
    trigger: Trigger | None = None
    closes_at: float | None = None
    """When the digest it joined stops collecting (a digest still collecting only)."""


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
    """When the run was stored, or a digest closed (its dispatch latency is measured from
    there)."""


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
