"""A job history row and the completion it becomes: pure functions, no server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from jobhooks.poll.agents import pick_agents
from jobhooks.poll.catalog import catalog_entries
from jobhooks.poll.rows import (
    NIL,
    JobStatus,
    MalformedRow,
    completion_fields,
    parse_row,
    parse_time,
)
from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.store.pull_plan import retry_count

JOB = "0b4b411a-4b26-4492-a575-a10adb43a08a"
AGENT = uuid.UUID("3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21")
TYPE = uuid.UUID("7b6bbc1b-d802-4b09-bec9-f5c221083130")


def raw(**changes: Any) -> dict[str, Any]:
    """The documented sample row, with changes."""
    row = {
        "JobHistoryId": 2168,
        "AgentMachine": "COMMAND",
        "JobId": JOB,
        "Schedule": {"Interval": {"Minutes": 1}},
        "JobType": "WinCertInventory",
        "OperationStart": "2023-05-06T00:27:00",
        "OperationEnd": "2023-05-06T00:27:04",
        "Message": "",
        "Result": "Success",
        "Status": "Completed",
        "StorePath": "My",
        "ClientMachine": "iistarget.boingy.com",
    }
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("result", "status"),
    [("Failure", "CompletedWillRetry"), (4, 5), ("4", "5"), ("failure", "completed-will-retry")],
)
def test_result_and_status_as_names_or_integers(result: object, status: object) -> None:
    row = parse_row(raw(Result=result, Status=status))
    assert row.result is JobResult.FAILURE
    assert row.status is JobStatus.COMPLETED_WILL_RETRY
    assert row.finished


def test_the_documented_sample_row() -> None:
    row = parse_row(raw())
    assert (row.id, row.job_id, row.agent_machine, row.job_type) == (
        2168,
        uuid.UUID(JOB),
        "COMMAND",
        "WinCertInventory",
    )
    assert row.operation_start == datetime(2023, 5, 6, 0, 27, tzinfo=UTC)
    assert row.operation_end == datetime(2023, 5, 6, 0, 27, 4, tzinfo=UTC)
    assert row.client_machine == "iistarget.boingy.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-06T00:27:00", datetime(2023, 5, 6, 0, 27, tzinfo=UTC)),
        ("2023-05-06T00:27:00.1234567", datetime(2023, 5, 6, 0, 27, 0, 123456, tzinfo=UTC)),
        ("2023-05-06T02:27:00+02:00", datetime(2023, 5, 6, 0, 27, tzinfo=UTC)),
        ("2023-05-06T00:27:00Z", datetime(2023, 5, 6, 0, 27, tzinfo=UTC)),
        (None, None),
    ],
)
def test_times_without_an_offset_are_utc(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("status", [0, 1, 2, "Unknown", "Waiting", "InProcess"])
def test_a_running_row_is_not_finished(status: object) -> None:
    row = parse_row(raw(Status=status, OperationEnd=None, Result=0))
    assert not row.finished
    assert row.operation_end is None


@pytest.mark.parametrize(
    ("changes", "row_id", "problem"),
    [
        ({"JobId": "not-a-guid"}, 2168, "JobId is not a GUID"),
        ({"Status": "Exploded"}, 2168, "Status: unknown value 'Exploded'"),
        ({"Result": 9}, 2168, "Result: unknown value 9"),
        ({"OperationEnd": "yesterday"}, 2168, "OperationEnd: not an ISO 8601 time: 'yesterday'"),
        ({"OperationStart": 5}, 2168, "OperationStart: expected an ISO 8601 time, got int"),
        # .NET's DateTime.MinValue written with a positive offset: before year 1 in UTC.
        ({"OperationEnd": "0001-01-01T00:00:00+05:30"}, 2168, "OperationEnd: out of range"),
        ({"JobHistoryId": None}, None, "JobHistoryId is missing"),
        ({"JobHistoryId": -3}, None, "not a positive integer"),
        ({"JobHistoryId": 2**63 + 5}, None, "not a positive integer"),
        # Digits to str.isdigit, not to int(): a row no different from one without an id.
        ({"JobHistoryId": "²"}, None, "not a positive integer"),
        ({"JobHistoryId": "①"}, None, "not a positive integer"),
    ],
)
def test_a_malformed_row_says_which_field(
    changes: dict[str, Any], row_id: int | None, problem: str
) -> None:
    with pytest.raises(MalformedRow) as caught:
        parse_row(raw(**changes))
    assert caught.value.row_id == row_id
    assert problem in str(caught.value)


def test_a_row_that_is_not_an_object() -> None:
    with pytest.raises(MalformedRow, match="expected a JSON object, got list"):
        parse_row([1, 2])


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, 0),
        ((int(JobStatus.COMPLETED), 0), 0),
        ((int(JobStatus.COMPLETED_WILL_RETRY), 0), 1),
        ((int(JobStatus.COMPLETED_WILL_RETRY), 2), 3),
        ((int(JobStatus.ACKNOWLEDGED), 4), 0),
    ],
)
def test_retry_count_follows_the_chain_of_will_retry_runs(
    previous: tuple[int, int] | None, expected: int
) -> None:
    assert retry_count(previous) == expected


def test_completion_fields_of_a_row() -> None:
    row = parse_row(raw(Result="Failure", Message="Access denied", OperationEnd=None, Status=3))
    fields = completion_fields(row, AGENT, "DOMAIN\\orch01", TYPE, 2)
    assert fields == {
        "agent_id": AGENT,
        "username": "DOMAIN\\orch01",
        "client_machine": "COMMAND",
        "job_result": JobResult.FAILURE,
        "job_id": uuid.UUID(JOB),
        "job_type": "WinCertInventory",
        "job_type_id": TYPE,
        "operation_type": OperationType.UNKNOWN,
        "certificate_id": None,
        "request_timestamp": datetime(2023, 5, 6, 0, 27, tzinfo=UTC),
        "current_retry_count": 2,
        "message": "Access denied",
        "source": "poll",
        "job_history_id": 2168,
    }


def test_a_run_without_a_machine_or_a_job_type_is_still_handled() -> None:
    row = parse_row(raw(AgentMachine=None, JobType=None, Status=3))
    fields = completion_fields(row, NIL, "", NIL, 0)
    assert (fields["client_machine"], fields["job_type"], fields["job_type_id"]) == ("", "", NIL)


def test_text_no_database_stores_is_replaced_not_refused() -> None:
    """A NUL (PostgreSQL refuses it) or half a surrogate pair: the run is handled, with
    U+FFFD in their place, as a whole page used to be refused on every poll."""
    row = parse_row(raw(Message="bad\x00byte \ud800 end", Status=3))
    assert completion_fields(row, NIL, "", NIL, 0)["message"] == "bad\ufffdbyte \ufffd end"


def test_completion_fields_refuse_what_a_check_in_refuses() -> None:
    row = parse_row(raw(AgentMachine="x" * 600))
    with pytest.raises(MalformedRow, match="client_machine: too long"):
        completion_fields(row, NIL, "", NIL, 0)


def test_several_agents_on_one_machine_resolve_to_the_approved_one_seen_last() -> None:
    agents = pick_agents(
        [
            {
                "AgentId": str(uuid.uuid4()),
                "ClientMachine": "ORCH01",
                "Status": 2,
                "LastSeen": "2026-01-01T00:00:00",
                "Username": "old",
            },
            {
                "AgentId": str(AGENT),
                "ClientMachine": "orch01",
                "Status": 2,
                "LastSeen": "2026-11-01T00:00:00",
                "Username": "DOMAIN\\orch01",
            },
            {
                "AgentId": str(uuid.uuid4()),
                "ClientMachine": "orch01",
                "Status": 3,
                "LastSeen": "2026-11-20T00:00:00",
                "Username": "disapproved",
            },
            {"AgentId": "junk", "ClientMachine": "orch01"},
            "not an object",
        ]
    )
    assert list(agents) == ["orch01"]
    assert agents["orch01"].id == AGENT
    assert agents["orch01"].username == "DOMAIN\\orch01"


def test_catalog_entries_from_store_types_and_custom_job_types() -> None:
    entries = catalog_entries(
        [
            {
                "ShortName": "IIS",
                "InventoryJobType": str(TYPE),
                "ManagementJobType": None,
                "DiscoveryJobType": "00000000-0000-0000-0000-000000000000",
                "EnrollmentJobType": "44340A94-9B99-410D-8011-598FB176C3C5",
            },
            {"Name": "no short name", "InventoryJobType": str(TYPE)},
        ],
        [{"JobTypeName": "Reboot", "Id": str(AGENT)}, {"JobTypeName": "NoId"}],
    )
    assert [(e.name, str(e.id), e.source) for e in entries] == [
        ("IISInventory", str(TYPE), "store type IIS"),
        ("IISReenrollment", "44340a94-9b99-410d-8011-598fb176c3c5", "store type IIS"),
        ("Reboot", str(AGENT), "custom job type"),
    ]
