"""One row of the platform's job history, and the completion it becomes. Pure functions.

A row (``GET /OrchestratorJobs/JobHistory``) describes one run of a job::

    {"JobHistoryId": 2170, "AgentMachine": "orch01", "JobId": "0b4b...",
     "JobType": "WinCertInventory", "OperationStart": "2023-05-06T00:27:00",
     "OperationEnd": "2023-05-06T00:27:04",
     "Message": "", "Result": "Success", "Status": "Completed", "StorePath": "My",
     "ClientMachine": "iis01.example.com"}

``Result`` and ``Status`` arrive as integers or as names; times carry no offset
and are UTC.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from jobhooks.sdk.enums import JobResult, OperationType, normalise_name
from jobhooks.store.pull_plan import PolledRow
from jobhooks.store.records import PlannedRun

__all__ = [
    "NIL",
    "Candidate",
    "HistoryRow",
    "JobStatus",
    "MalformedRow",
    "completion_fields",
    "parse_row",
    "parse_time",
    "row_id",
    "storable",
]

NIL = uuid.UUID(int=0)
"""The platform's ``Guid.Empty``: an agent or job type that could not be resolved."""

MAX_TEXT = 512
MAX_MESSAGE = 32_768
"""The limits a check-in applies to text fields (see ``jobhooks.sdk.context``)."""


class JobStatus(enum.IntEnum):
    """``Status`` of a job history row."""

    UNKNOWN = 0
    WAITING = 1
    IN_PROCESS = 2
    COMPLETED = 3
    ACKNOWLEDGED = 4
    COMPLETED_WILL_RETRY = 5

    @classmethod
    def parse(cls, value: object) -> Self:
        """The member for an integer, a numeric string or a name in any spelling."""
        member = _STATUS_LOOKUP.get(value) if isinstance(value, int | str) else None
        if member is not None and not isinstance(value, bool):
            return cls(member)
        if isinstance(value, str):
            text = value.strip()
            key: object = int(text) if text.isdigit() else normalise_name(text)
            member = _STATUS_LOOKUP.get(key)
            if member is not None:
                return cls(member)
        choices = ", ".join(f"{m.display} ({m.value})" for m in cls)
        raise ValueError(f"unknown value {value!r}; expected one of {choices}")

    @property
    def display(self) -> str:
        """The platform's name (``CompletedWillRetry``)."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def finished(self) -> bool:
        """True once the run has ended: Completed, Acknowledged or CompletedWillRetry."""
        return self >= JobStatus.COMPLETED


_STATUS_LOOKUP: dict[object, int] = {
    **{member.value: member.value for member in JobStatus},
    **{member.display: member.value for member in JobStatus},
    **{normalise_name(member.name): member.value for member in JobStatus},
}


class MalformedRow(ValueError):
    """A row that cannot become a completion; ``row_id`` is its JobHistoryId when readable."""

    def __init__(self, row_id: int | None, problem: str) -> None:
        self.row_id = row_id
        self.problem = problem
        where = f"job history row {row_id}" if row_id is not None else "a job history row"
        super().__init__(f"{where} is malformed: {problem}")


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A parsed job history row."""

    id: int
    job_id: uuid.UUID
    agent_machine: str
    job_type: str
    status: JobStatus
    result: JobResult
    operation_start: datetime | None
    operation_end: datetime | None
    message: str | None
    client_machine: str | None = None

    @property
    def finished(self) -> bool:
        """True once the run has ended (Status 3, 4 or 5)."""
        return self.status.finished

    @property
    def start_seconds(self) -> float | None:
        """``OperationStart`` as seconds since the epoch."""
        return self.operation_start.timestamp() if self.operation_start else None


def _key(data: dict[str, Any], name: str) -> Any:
    if name in data:
        return data[name]
    folded = name.casefold()
    for key, value in data.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None


def row_id(data: object) -> int | None:
    """The ``JobHistoryId`` of a raw row, or None when it has none that is usable."""
    if not isinstance(data, dict):
        return None
    value = _key(data, "JobHistoryId")
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())  # str.isdigit takes '²' too, which int() refuses
    return value if isinstance(value, int) and 0 < value <= MAX_ID else None


MAX_ID = 2**63 - 1
"""The largest ``JobHistoryId`` a database stores (a 64-bit integer, as the platform's)."""


def parse_time(value: object, name: str = "time") -> datetime | None:
    """An ISO 8601 time of the platform; one without an offset is UTC. None stays None.
    Raises ValueError naming the field ``name``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 time: {value[:60]!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # .NET's DateTime.MinValue with a positive offset
        raise ValueError(f"{name}: out of range in UTC: {value[:60]!r}") from None


def _text(data: dict[str, Any], name: str) -> str | None:
    value = _key(data, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def parse_row(data: object) -> HistoryRow:
    """Parse one raw row; raises :class:`MalformedRow` saying which field is wrong."""
    identifier = row_id(data)
    if not isinstance(data, dict):
        raise MalformedRow(None, f"expected a JSON object, got {type(data).__name__}")
    if identifier is None:
        raise MalformedRow(
            None, f"JobHistoryId is missing or not a positive integer: {data!r:.200}"
        )
    try:
        job_id = uuid.UUID(str(_key(data, "JobId")))
    except ValueError:
        raise MalformedRow(
            identifier, f"JobId is not a GUID: {_key(data, 'JobId')!r:.80}"
        ) from None
    try:
        status = JobStatus.parse(_key(data, "Status"))
    except ValueError as exc:
        raise MalformedRow(identifier, f"Status: {exc}") from None
    try:
        raw_result = _key(data, "Result")
        result = JobResult.UNKNOWN if raw_result is None else JobResult.parse(raw_result)
    except ValueError as exc:
        raise MalformedRow(identifier, f"Result: {exc}") from None
    try:
        start = parse_time(_key(data, "OperationStart"), "OperationStart")
        end = parse_time(_key(data, "OperationEnd"), "OperationEnd")
        # Without a machine or a job type the run is still handled: the agent and the
        # job type resolve to the nil GUID, as any that cannot be resolved.
        machine = _text(data, "AgentMachine") or ""
        job_type = _text(data, "JobType") or ""
        message = _text(data, "Message")
        client_machine = _text(data, "ClientMachine")
    except ValueError as exc:
        raise MalformedRow(identifier, str(exc)) from None
    return HistoryRow(
        id=identifier,
        job_id=job_id,
        agent_machine=machine,
        job_type=job_type,
        status=status,
        result=result,
        operation_start=start,
        operation_end=end,
        message=message[:MAX_MESSAGE] if message is not None else None,
        client_machine=client_machine,
    )


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with each NUL or half a surrogate pair, which no database stores (SQLite
    refuses the half pair, PostgreSQL both), replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _checked(value: str | None, name: str, limit: int) -> str:
    """Text a check-in would accept in this field: at most ``limit`` characters (raises
    ValueError naming the field otherwise); a NUL or half a surrogate pair, which no
    database stores, becomes U+FFFD, since the run must be handled all the same."""
    text = value or ""
    if len(text) > limit:
        raise ValueError(f"{name}: too long: {len(text)} characters, at most {limit}")
    return storable(text)


def completion_fields(
    row: HistoryRow,
    agent_id: uuid.UUID,
    username: str,
    job_type_id: uuid.UUID,
    current_retry_count: int,
) -> dict[str, Any]:
    """The context fields of the completion a finished row becomes, checked as a check-in's
    are. Raises :class:`MalformedRow` if a value cannot be stored."""
    try:
        return {
            "agent_id": agent_id,
            "username": _checked(username, "username", MAX_TEXT),
            "client_machine": _checked(row.agent_machine, "client_machine", MAX_TEXT),
            "job_result": row.result,
            "job_id": row.job_id,
            "job_type": _checked(row.job_type, "job_type", MAX_TEXT),
            "job_type_id": job_type_id,
            "operation_type": OperationType.UNKNOWN,
            "certificate_id": None,
            "request_timestamp": row.operation_start,
            "current_retry_count": current_retry_count,
            "message": None
            if row.message is None
            else _checked(row.message, "message", MAX_MESSAGE),
            "source": "poll",
            "job_history_id": row.id,
        }
    except ValueError as exc:
        raise MalformedRow(row.id, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Candidate(PolledRow):
    """A row as the poller prepared it: what the store records (see
    :class:`~jobhooks.store.pull_plan.PolledRow`), and the parsed row it came from."""

    row: HistoryRow | None = None

    @classmethod
    def of(
        cls,
        row: HistoryRow | None,
        identifier: int,
        fields: dict[str, Any] | None = None,
        runs: tuple[PlannedRun, ...] = (),
        problem: str | None = None,
    ) -> Candidate:
        """The candidate for a parsed row (None when it could not be parsed)."""
        if row is None:
            return cls(identifier, problem=problem)
        end = row.operation_end or row.operation_start
        return cls(
            identifier,
            job_id=str(row.job_id),
            finished=row.finished,
            status=int(row.status) if row.finished else None,
            started=row.start_seconds,
            ended=end.timestamp() if row.finished and end is not None else None,
            fields=fields,
            runs=runs,
            problem=problem,
            row=row,
        )
