"""The read model: what operators see of completions, runs and the catalog, as typed records.

The API answers with :meth:`as_json` of these, the dashboard renders their
attributes, the CLI prints them: one shape for the three.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from jobhooks.store.records import RunStatus

__all__ = [
    "AgentView",
    "AttemptView",
    "CompletionDetail",
    "CompletionPage",
    "CompletionView",
    "FilterChoices",
    "HandlerHealth",
    "JobTypePage",
    "JobTypeView",
    "LastError",
    "Overview",
    "RunDetail",
    "RunPage",
    "RunView",
]


class _Json:
    def as_json(self) -> dict[str, Any]:
        """The record as the API shows it (nested records included)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class CompletionView(_Json):
    """One stored completion (times are UTC seconds since the epoch)."""

    id: str
    received_at: float
    source: str
    agent_id: str
    username: str
    client_machine: str
    job_id: str
    job_type: str
    job_type_id: str
    operation_type: str
    job_result: str
    certificate_id: int | None
    request_timestamp: float | None
    current_retry_count: int
    retry_count_computed: bool
    message: str | None
    job_history_id: int | None
    not_sent: list[dict[str, str]] = field(default_factory=list)
    """The registrations that matched its job type but whose rules (``when``) did not fire,
    each ``{"handler", "reason"}``."""


@dataclass(frozen=True, slots=True)
class AttemptView(_Json):
    """One attempt of a run: when, how long, how it ended and why."""

    number: int
    worker: str | None
    started_at: float
    finished_at: float
    duration: float
    outcome: str
    error: str | None
    traceback: str | None


@dataclass(frozen=True, slots=True)
class RunView(_Json):
    """One handler run (``status`` as operators see it: ``running`` is a held open run)."""

    id: str
    completion_id: str
    handler: str
    status: RunStatus
    attempts: int
    total_attempts: int
    max_attempts: int
    due_at: float | None
    """When a waiting run is due (None while it runs or once it ended)."""
    lease_until: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None
    last_error: str | None
    trigger: dict[str, Any] | None = None
    """Why the run exists when its registration has rules: ``kind``, ``streak``,
    ``since`` and ``reason`` (None under ``when = "always"``)."""
    group_size: int | None = None
    """How many completions this digest holds (``group_by``); None for a run of one."""
    closes_at: float | None = None
    """When a digest still collecting stops taking completions and becomes due."""


@dataclass(frozen=True, slots=True)
class RunDetail(RunView):
    """A run with every attempt, oldest first (and a digest's completions, oldest first)."""

    attempt_history: list[AttemptView] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    """The ids of a digest's completions in the order they joined; empty for a run of one."""


@dataclass(frozen=True, slots=True)
class CompletionDetail(CompletionView):
    """A completion with its runs."""

    handler_runs: list[RunDetail] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompletionPage(_Json):
    """One page of completions, newest first."""

    items: list[CompletionView]
    next: str | None
    """The ``before`` cursor of the next page, None on the last."""
    searched_to: float | None = None
    """Set when the page is short because the scan window ended (not the data): the time
    the search reached; the next page searches older completions."""


@dataclass(frozen=True, slots=True)
class RunPage(_Json):
    """One page of handler runs, newest first."""

    items: list[RunView]
    next: str | None


@dataclass(frozen=True, slots=True)
class LastError(_Json):
    """A handler's newest failed or dead run."""

    run_id: str
    completion_id: str
    status: str
    at: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class HandlerHealth(_Json):
    """A handler's runs now and over the last day."""

    name: str
    now: dict[str, int]
    """Runs by status now (``succeeded`` counts the last day's)."""
    succeeded_recently: int
    dead_recently: int
    success_rate: float | None
    """Of the runs created over the last day that ended."""
    last_error: LastError | None


@dataclass(frozen=True, slots=True)
class Overview(_Json):
    """Everything the dashboard's overview shows."""

    now: float
    since: float
    since_hour: int
    chart: dict[str, Any]
    by_type: list[dict[str, Any]]
    by_agent: list[dict[str, Any]]
    runs_now: dict[str, int]
    runs_recent: dict[str, int]
    backlog: dict[str, float]
    handlers: list[HandlerHealth]


@dataclass(frozen=True, slots=True)
class JobTypeView(_Json):
    """A job type: its name and where it was learned, with its completions."""

    id: str
    name: str | None
    origin: str
    """``synced`` (the platform's catalog), ``seen`` (in completions), ``config``
    (``[job_types]`` only) or ``unresolved`` (counted in completions, named nowhere)."""
    first_seen: float | None
    config_name: str | None
    completions: int = 0
    failures: int = 0
    last_day: int = 0


@dataclass(frozen=True, slots=True)
class JobTypePage(_Json):
    """One page of the job type catalog."""

    items: list[JobTypeView]
    next: str | None


@dataclass(frozen=True, slots=True)
class AgentView(_Json):
    """An agent seen, with its totals and the last day's failure rate."""

    id: str
    client_machine: str
    username: str
    first_seen: float
    last_seen: float
    last_completion_id: str
    completions: int
    failures: int
    rate: float
    last_day: int
    last_day_failures: int
    last_day_rate: float | None


@dataclass(frozen=True, slots=True)
class FilterChoices(_Json):
    """Options of the completions filters, each empty when there are too many to list."""

    agents: list[tuple[str, str]]
    """(agent id, client machine)."""
    job_types: list[tuple[str, str]]
    """(job type id, name)."""
