"""The context a handler receives: one completed orchestrator job."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from jobhooks.errors import ContextError, FieldProblem, PlatformNotConfigured
from jobhooks.sdk.enums import JobResult, OperationType, normalise_name
from jobhooks.sdk.trigger import Trigger

__all__ = [
    "MAX_ID",
    "MAX_RETRY_COUNT",
    "SOURCES",
    "JobCompleteContext",
    "LongNumber",
    "unconfigured_async_client",
    "unconfigured_client",
]

SOURCES = ("check-in", "poll")
_MAX_TEXT = 512
_MAX_MESSAGE = 32_768


class _UnconfiguredTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def _refuse(self) -> httpx.Response:
        raise PlatformNotConfigured(
            "context.client needs the platform's API: set [platform] url (and credentials) "
            "in jobhooks.toml"
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._refuse()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._refuse()


@functools.cache
def unconfigured_client() -> httpx.Client:
    """A client whose every request raises :class:`PlatformNotConfigured`."""
    return httpx.Client(transport=_UnconfiguredTransport(), trust_env=False)


@functools.cache
def unconfigured_async_client() -> httpx.AsyncClient:
    """The async twin of :func:`unconfigured_client`."""
    return httpx.AsyncClient(transport=_UnconfiguredTransport(), trust_env=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCompleteContext:
    """A completed orchestrator job, as handlers see it.

    The seed's ``OrchestratorJobCompleteHandlerContext`` in snake_case, plus
    ``message``, ``completion_id``, ``source``, ``job_history_id`` and
    ``attempt``. ``client`` and ``async_client`` talk to the platform's API
    as configured in ``[platform]``.
    """

    agent_id: uuid.UUID
    username: str = ""
    client_machine: str = ""
    job_result: JobResult
    job_id: uuid.UUID
    job_type: str
    job_type_id: uuid.UUID
    operation_type: OperationType = OperationType.UNKNOWN
    certificate_id: int | None = None
    request_timestamp: datetime | None = None
    current_retry_count: int = 0
    message: str | None = None
    completion_id: str = ""
    source: str = "check-in"
    job_history_id: int | None = None
    attempt: int = 1
    trigger: Trigger | None = None
    """Why this run exists when its registration has rules (``when``); None under
    ``when = "always"``."""
    group: tuple[JobCompleteContext, ...] = field(default=(), repr=False, compare=False)
    """The completions of the digest this run delivers, oldest first (``group_by``); the
    context itself is the newest. Outside a digest, a group of one: this context."""
    client: httpx.Client = field(default_factory=unconfigured_client, repr=False, compare=False)
    async_client: httpx.AsyncClient = field(
        default_factory=unconfigured_async_client, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", (self,))

    def __reduce__(self) -> tuple[Any, ...]:
        # Clients hold sockets and cannot cross a process boundary; the data can.
        alone = len(self.group) == 1 and self.group[0] is self
        members = [] if alone else [m.to_dict() for m in self.group]
        return (_from_data, (self.to_dict(), members))

    @property
    def is_digest(self) -> bool:
        """True when this run delivers a digest of several completions."""
        return len(self.group) > 1

    @property
    def failed(self) -> bool:
        """True when the job's result is a failure."""
        return self.job_result is JobResult.FAILURE

    def to_dict(self, *, pascal_case: bool = False) -> dict[str, Any]:
        """The data fields as JSON-ready values (enums by name, UUIDs and times as text)."""
        data: dict[str, Any] = {}
        for name in DATA_FIELDS:
            value = getattr(self, name)
            if isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, JobResult | OperationType):
                value = value.display
            elif isinstance(value, datetime):
                moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
                value = moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
            elif isinstance(value, Trigger):
                value = value.to_dict()
            data[_PASCAL[name] if pascal_case else name] = value
        return data

    def to_json(self, *, pascal_case: bool = False) -> str:
        """The data fields as a JSON document."""
        return json.dumps(self.to_dict(pascal_case=pascal_case), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> JobCompleteContext:
        """Build a context from a mapping with snake_case or PascalCase keys.

        Enums are accepted by integer or by name in any spelling. Every invalid
        field is reported in one :class:`ContextError`. ``overrides`` (such as
        ``client``) are applied as given.
        """
        values, problems = parse_fields(data)
        if problems:
            raise ContextError(problems)
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ContextError([FieldProblem("context", str(exc))]) from None

    @classmethod
    def from_json(cls, text: str | bytes, **overrides: Any) -> JobCompleteContext:
        """Build a context from a JSON object; see :meth:`from_dict`."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ContextError([FieldProblem("body", f"not valid JSON: {exc}")]) from None
        if not isinstance(data, dict):
            raise ContextError([FieldProblem("body", "expected a JSON object")])
        return cls.from_dict(data, **overrides)


def _from_data(
    data: dict[str, Any], members: list[dict[str, Any]] | None = None
) -> JobCompleteContext:
    group = tuple(JobCompleteContext.from_dict(m) for m in members or ())
    return JobCompleteContext.from_dict(data, group=group)


DATA_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(JobCompleteContext)
    if f.name not in ("client", "async_client", "group")
)
REQUIRED_FIELDS = ("agent_id", "job_id", "job_type", "job_type_id", "job_result")
_PASCAL = {name: "".join(part.capitalize() for part in name.split("_")) for name in DATA_FIELDS}
_KEYS = {normalise_name(name): name for name in DATA_FIELDS}
# The two usual spellings, looked up before folding an unusual one.
_EXACT = {**{name: name for name in DATA_FIELDS}, **{v: k for k, v in _PASCAL.items()}}


def _text(limit: int) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_kind(value)}")
        if len(value) > limit:
            raise ValueError(f"too long: {len(value)} characters, at most {limit}")
        if not value.isascii() and not _is_unicode(value):
            raise ValueError("not valid Unicode text (it contains an unpaired surrogate)")
        return value

    return parse


def _is_unicode(text: str) -> bool:
    # JSON may escape half a surrogate pair ("\ud800"); no database can store that.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else parse(value)


def _guid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a GUID string, got {_kind(value)}")
    try:
        return _uuid_of(value)
    except ValueError:
        raise ValueError(f"not a GUID: {value[:80]!r}") from None


# Agents, job types and recurring jobs report the same GUIDs again and again.
_uuid_of = functools.lru_cache(maxsize=4096)(uuid.UUID)


MAX_ID = 2**63 - 1
"""The largest certificate or job history id (a 64-bit column)."""
MAX_RETRY_COUNT = 2**31 - 1
"""The largest ``current_retry_count`` (a 32-bit column; no job fails that often)."""


class LongNumber:
    """A JSON number with more digits than any field holds, kept as its length only
    (reading it would cost time, and Python refuses past 4,300 digits)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"a number of {self.digits} digits"


LONGEST_NUMBER = 40
"""Digits a JSON integer may have and still be read as one (see :class:`LongNumber`)."""


def _count(value: object, limit: int = MAX_ID) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON does not tell 1402 from 1402.0
    if isinstance(value, LongNumber):
        raise ValueError(f"expected an integer of at most {limit}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a non-negative integer, got {_kind(value)}")
    if isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"expected a non-negative integer, got {value[:40]!r}")
        if len(digits) > LONGEST_NUMBER:
            raise ValueError(f"expected an integer of at most {limit}, got {len(digits)} digits")
        value = int(digits)
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {value}")
    if value > limit:
        raise ValueError(f"expected an integer of at most {limit}, got {value}")
    return value


def _retry_count(value: object) -> int:
    return _count(value, MAX_RETRY_COUNT)


def _timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"not an ISO 8601 time: {value[:60]!r} (expected e.g. 2026-11-22T10:00:00Z)"
            ) from None
    else:
        raise ValueError(f"expected an ISO 8601 time string, got {_kind(value)}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range in UTC: {moment.isoformat()!r}") from None


def _source(value: object) -> str:
    if value not in SOURCES:
        raise ValueError(f"expected one of {', '.join(SOURCES)}, got {value!r}")
    return str(value)


def _attempt(value: object) -> int:
    number = _count(value)
    if number < 1:
        raise ValueError("expected an integer of at least 1")
    return number


def _trigger(value: object) -> Trigger:
    if isinstance(value, Trigger):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object (kind, streak, since, reason), got {_kind(value)}")
    return Trigger.from_dict(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        LongNumber: repr(value),
    }.get(type(value), type(value).__name__)


_PARSERS: dict[str, Callable[[object], Any]] = {
    "agent_id": _guid,
    "username": _text(_MAX_TEXT),
    "client_machine": _text(_MAX_TEXT),
    "job_result": JobResult.parse,
    "job_id": _guid,
    "job_type": _text(_MAX_TEXT),
    "job_type_id": _guid,
    "operation_type": OperationType.parse,
    "certificate_id": _optional(_count),
    "request_timestamp": _optional(_timestamp),
    "current_retry_count": _retry_count,
    "message": _optional(_text(_MAX_MESSAGE)),
    "completion_id": _text(_MAX_TEXT),
    "source": _source,
    "job_history_id": _optional(_count),
    "attempt": _attempt,
    "trigger": _optional(_trigger),
}


def canonical_key(key: str) -> str | None:
    """The snake_case field name for a key in either spelling, or None if unknown."""
    return _EXACT.get(key) or _KEYS.get(normalise_name(key))


MAX_PROBLEMS = 20
"""Problems of one report that are described in full (a body of thousands of unknown
keys must not cost thousands of suggestions, nor an answer larger than itself)."""


def parse_fields(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Parse the data fields of a report; returns the values and every problem found."""
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for key, raw in data.items():
        name = canonical_key(key) if isinstance(key, str) else None
        if name is None:
            suffix = ""
            if len(problems) < MAX_PROBLEMS:  # a suggestion costs: only for those listed
                hint = difflib.get_close_matches(str(key), [*DATA_FIELDS, *_PASCAL.values()], n=1)
                suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            problems.append(FieldProblem(str(key)[:80], f"unknown field{suffix}"))
            continue
        if name in values:
            problems.append(FieldProblem(name, "given twice (in both spellings)"))
            continue
        if raw is None and name in REQUIRED_FIELDS:
            problems.append(FieldProblem(name, "is required and may not be null"))
            continue
        if raw is None and name in ("username", "client_machine"):
            values[name] = ""
            continue
        if raw is None and name in ("current_retry_count", "operation_type"):
            continue
        try:
            values[name] = _PARSERS[name](raw)
        except ValueError as exc:
            problems.append(FieldProblem(name, str(exc)))
    for name in REQUIRED_FIELDS:
        if name not in values and not any(p.field == name for p in problems):
            problems.append(FieldProblem(name, "is required"))
    return values, problems
