"""JobCompleteContext: both key spellings, enums by number or name, every problem at once."""

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobhooks import JobCompleteContext, JobResult, OperationType
from jobhooks.errors import ContextError, PlatformNotConfigured

AGENT = "3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21"
JOB = "9f0e2a7c-1d9b-4e21-8c57-3b0c8f5e6a1d"
JOB_TYPE = "7b6bbc1b-d802-4b09-bec9-f5c221083130"

# The check-in body DESIGN.md shows.
DESIGN_BODY: dict[str, Any] = {
    "agent_id": AGENT,
    "username": "DOMAIN\\orch01",
    "client_machine": "orch01.example.com",
    "job_id": JOB,
    "job_type": "Inventory",
    "job_type_id": JOB_TYPE,
    "operation_type": "Inventory",
    "job_result": "Failure",
    "certificate_id": None,
    "request_timestamp": "2026-11-22T10:00:00Z",
    "current_retry_count": 2,
    "job_history_id": 2170,
    "message": "Access denied to store /etc/ssl",
}

PASCAL_BODY: dict[str, Any] = {
    "AgentId": AGENT,
    "Username": "DOMAIN\\orch01",
    "ClientMachine": "orch01.example.com",
    "JobId": JOB,
    "JobType": "Inventory",
    "JobTypeId": JOB_TYPE,
    "OperationType": 1,
    "JobResult": 4,
    "CertificateId": None,
    "RequestTimestamp": "2026-11-22T10:00:00Z",
    "CurrentRetryCount": 2,
    "JobHistoryId": 2170,
    "Message": "Access denied to store /etc/ssl",
}


def minimal(**extra: Any) -> dict[str, Any]:
    body = {
        "agent_id": AGENT,
        "job_id": JOB,
        "job_type": "Inventory",
        "job_type_id": JOB_TYPE,
        "job_result": "Failure",
    }
    return {**body, **extra}


def problems_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ContextError) as caught:
        JobCompleteContext.from_dict(data)
    return {problem.field: problem.message for problem in caught.value.problems}


def test_the_designed_body_parses_to_typed_fields() -> None:
    context = JobCompleteContext.from_dict(DESIGN_BODY)
    assert context.agent_id == uuid.UUID(AGENT)
    assert context.job_id == uuid.UUID(JOB)
    assert context.job_type_id == uuid.UUID(JOB_TYPE)
    assert context.job_result is JobResult.FAILURE
    assert context.operation_type is OperationType.INVENTORY
    assert context.request_timestamp == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert context.current_retry_count == 2
    assert context.job_history_id == 2170
    assert context.certificate_id is None
    assert context.message == "Access denied to store /etc/ssl"
    assert context.failed


def test_the_seed_pascal_case_keys_give_the_same_context() -> None:
    assert JobCompleteContext.from_dict(PASCAL_BODY) == JobCompleteContext.from_dict(DESIGN_BODY)


def test_context_is_frozen() -> None:
    context = JobCompleteContext.from_dict(DESIGN_BODY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.job_result = JobResult.SUCCESS  # type: ignore[misc]


def test_defaults_for_optional_fields() -> None:
    context = JobCompleteContext.from_dict(minimal())
    assert context.username == ""
    assert context.client_machine == ""
    assert context.operation_type is OperationType.UNKNOWN
    assert context.current_retry_count == 0
    assert context.request_timestamp is None
    assert context.source == "check-in"
    assert context.attempt == 1


@pytest.mark.parametrize("spelling", ["CreateAdd", "CREATE_ADD", "create-add", "5", 5])
def test_operation_type_in_any_spelling(spelling: object) -> None:
    context = JobCompleteContext.from_dict(minimal(operation_type=spelling))
    assert context.operation_type is OperationType.CREATE_ADD


@pytest.mark.parametrize("spelling", ["Failure", "FAILURE", "failure", 4, "4"])
def test_job_result_in_any_spelling(spelling: object) -> None:
    assert JobCompleteContext.from_dict(minimal(job_result=spelling)).failed


def test_unknown_enum_value_names_the_field_and_lists_accepted_values() -> None:
    with pytest.raises(ContextError) as caught:
        JobCompleteContext.from_dict(minimal(job_result="Exploded", operation_type=42))
    problems = {problem.field: problem.message for problem in caught.value.problems}
    assert "'Exploded'" in problems["job_result"]
    assert "Failure (4)" in problems["job_result"]
    assert "Success (2)" in problems["job_result"]
    assert "42" in problems["operation_type"]
    assert "CreateAdd (5)" in problems["operation_type"]
    assert "FetchLogs (9)" in problems["operation_type"]
    assert "job_result" in str(caught.value)


def test_missing_required_fields_are_each_named() -> None:
    problems = problems_of({"username": "x"})
    assert set(problems) == {"agent_id", "job_id", "job_type", "job_type_id", "job_result"}
    assert all("required" in message for message in problems.values())


def test_required_field_may_not_be_null() -> None:
    assert "null" in problems_of(minimal(job_id=None))["job_id"]


@pytest.mark.parametrize("bad", ["not-a-guid", "7b6bbc1b-d802-4b09-bec9", "", 12, ["x"]])
def test_bad_guids_are_refused(bad: object) -> None:
    assert "GUID" in problems_of(minimal(job_type_id=bad))["job_type_id"]


def test_every_invalid_field_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "agent_id": "nope",
            "job_id": JOB,
            "job_type_id": "also-nope",
            "job_result": "Explode",
            "operation_type": "Teleport",
            "current_retry_count": -1,
            "request_timestamp": "yesterday",
            "certificate_id": "abc",
            "source": "carrier-pigeon",
            "jobTipe": "Inventory",
        }
    )
    assert {
        "agent_id",
        "job_type_id",
        "job_result",
        "operation_type",
        "current_retry_count",
        "request_timestamp",
        "certificate_id",
        "source",
        "jobTipe",
        "job_type",
    } <= set(problems)
    assert "did you mean" in problems["jobTipe"]
    assert "ISO 8601" in problems["request_timestamp"]


def test_a_field_given_in_both_spellings_is_refused() -> None:
    assert "twice" in problems_of(minimal(JobResult="Success"))["job_result"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:00", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
        ("2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
        ("2026-11-22T12:00:00+02:00", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
        ("2026-11-22 10:00:00.250", datetime(2026, 11, 22, 10, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_utc_and_naive_ones_are_taken_as_utc(text: str, expected: datetime) -> None:
    stamp = JobCompleteContext.from_dict(minimal(request_timestamp=text)).request_timestamp
    assert stamp == expected
    assert stamp is not None and stamp.utcoffset() == timedelta(0)


def test_a_timestamp_that_leaves_the_calendar_in_utc_is_a_context_error() -> None:
    problems = problems_of(minimal(request_timestamp="0001-01-01T00:00:00+05:00"))
    assert "request_timestamp" in problems


@pytest.mark.parametrize("text", ["", "[]", "42", "{", '"x"'])
def test_from_json_refuses_what_is_not_an_object(text: str) -> None:
    with pytest.raises(ContextError) as caught:
        JobCompleteContext.from_json(text)
    assert caught.value.problems[0].field == "body"


def test_over_long_text_is_refused() -> None:
    assert "too long" in problems_of(minimal(client_machine="x" * 10_000))["client_machine"]


def test_null_username_and_retry_count_take_their_defaults() -> None:
    context = JobCompleteContext.from_dict(minimal(username=None, current_retry_count=None))
    assert context.username == ""
    assert context.current_retry_count == 0


def test_retry_count_as_numeric_string() -> None:
    assert JobCompleteContext.from_dict(minimal(CurrentRetryCount="3")).current_retry_count == 3


def test_booleans_are_not_counts() -> None:
    assert "current_retry_count" in problems_of(minimal(current_retry_count=True))


def test_to_dict_uses_platform_names_and_text() -> None:
    data = JobCompleteContext.from_dict(DESIGN_BODY).to_dict()
    assert data["job_result"] == "Failure"
    assert data["operation_type"] == "Inventory"
    assert data["agent_id"] == AGENT
    assert data["request_timestamp"] == "2026-11-22T10:00:00Z"
    assert "client" not in data and "async_client" not in data
    pascal = JobCompleteContext.from_dict(DESIGN_BODY).to_dict(pascal_case=True)
    assert pascal["AgentId"] == AGENT
    assert pascal["CurrentRetryCount"] == 2


def test_times_are_written_in_utc_whatever_zone_they_were_built_in() -> None:
    eastern = timezone(timedelta(hours=-5))
    built = JobCompleteContext(
        agent_id=uuid.UUID(AGENT),
        job_id=uuid.UUID(JOB),
        job_type="Inventory",
        job_type_id=uuid.UUID(JOB_TYPE),
        job_result=JobResult.FAILURE,
        request_timestamp=datetime(2026, 11, 22, 5, 0, 0, 500, tzinfo=eastern),
    )
    assert built.to_dict()["request_timestamp"] == "2026-11-22T10:00:00.000500Z"
    assert JobCompleteContext.from_json(built.to_json()) == built


def test_default_client_refuses_to_talk_to_an_unconfigured_platform() -> None:
    context = JobCompleteContext.from_dict(minimal())
    with pytest.raises(PlatformNotConfigured, match=r"\[platform\] url"):
        context.client.get("https://keyfactor.example.com/KeyfactorAPI/Agents")


def test_overrides_supply_a_client() -> None:
    client = httpx.Client(base_url="https://keyfactor.example.com/KeyfactorAPI")
    try:
        context = JobCompleteContext.from_json(json.dumps(minimal()), client=client)
        assert context.client is client
    finally:
        client.close()


_text = st.text(max_size=40)
_ids = st.integers(min_value=0, max_value=2**63 - 1)
_offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
_timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=_offsets
)

contexts = st.builds(
    JobCompleteContext,
    agent_id=st.uuids(),
    username=_text,
    client_machine=_text,
    job_result=st.sampled_from(JobResult),
    job_id=st.uuids(),
    job_type=_text,
    job_type_id=st.uuids(),
    operation_type=st.sampled_from(OperationType),
    certificate_id=st.none() | _ids,
    request_timestamp=st.none() | _timestamps,
    current_retry_count=st.integers(min_value=0, max_value=2**31 - 1),
    message=st.none() | st.text(max_size=200),
    completion_id=_text,
    source=st.sampled_from(["check-in", "poll"]),
    job_history_id=st.none() | _ids,
    attempt=st.integers(min_value=1, max_value=2**63 - 1),
)


@settings(max_examples=150, deadline=None)
@given(contexts, st.booleans())
def test_json_round_trip(context: JobCompleteContext, pascal_case: bool) -> None:
    text = context.to_json(pascal_case=pascal_case)
    again = JobCompleteContext.from_json(text)
    assert again == context
    assert again.to_json(pascal_case=pascal_case) == JobCompleteContext.from_json(
        again.to_json()
    ).to_json(pascal_case=pascal_case)
    if again.request_timestamp is not None:
        assert again.request_timestamp.tzinfo is UTC


@settings(max_examples=50, deadline=None)
@given(contexts)
def test_dict_round_trip_through_either_spelling(context: JobCompleteContext) -> None:
    assert JobCompleteContext.from_dict(context.to_dict()) == context
    assert JobCompleteContext.from_dict(context.to_dict(pascal_case=True)) == context
