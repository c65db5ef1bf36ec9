"""JobResult and OperationType keep the platform's integers and accept its names in any spelling."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobhooks import JobResult, OperationType

JOB_RESULTS = {"UNKNOWN": 0, "IN_PROCESS": 1, "SUCCESS": 2, "WARNING": 3, "FAILURE": 4}
OPERATION_TYPES = {
    "UNKNOWN": 0,
    "INVENTORY": 1,
    "ADD": 2,
    "REMOVE": 3,
    "CREATE": 4,
    "CREATE_ADD": 5,
    "REENROLLMENT": 6,
    "DISCOVERY": 7,
    "SET_PASSWORD": 8,
    "FETCH_LOGS": 9,
}


def test_job_result_has_the_platform_values() -> None:
    assert {member.name: member.value for member in JobResult} == JOB_RESULTS


def test_operation_type_has_the_platform_values() -> None:
    assert {member.name: member.value for member in OperationType} == OPERATION_TYPES


@pytest.mark.parametrize(
    "spelling", ["CreateAdd", "CREATE_ADD", "create-add", "createadd", "Create Add", "5", " 5 ", 5]
)
def test_operation_type_accepts_every_spelling(spelling: object) -> None:
    assert OperationType.parse(spelling) is OperationType.CREATE_ADD


@pytest.mark.parametrize(
    ("spelling", "member"),
    [
        ("Failure", JobResult.FAILURE),
        ("failure", JobResult.FAILURE),
        ("FAILURE", JobResult.FAILURE),
        ("InProcess", JobResult.IN_PROCESS),
        ("in-process", JobResult.IN_PROCESS),
        ("IN_PROCESS", JobResult.IN_PROCESS),
        (2, JobResult.SUCCESS),
        (4.0, JobResult.FAILURE),  # JSON has one number type: 4.0 is the integer 4
        ("3", JobResult.WARNING),
        (JobResult.UNKNOWN, JobResult.UNKNOWN),
    ],
)
def test_job_result_accepts_integers_and_names(spelling: object, member: JobResult) -> None:
    assert JobResult.parse(spelling) is member


@pytest.mark.parametrize(
    "bad", ["Failed", "7", 7, -1, "-1", True, 4.5, None, "", [4], "\u0664", "\uff14"]
)
def test_unknown_job_result_lists_the_accepted_values(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        JobResult.parse(bad)
    message = str(caught.value)
    assert repr(bad) in message
    for accepted in ("Unknown (0)", "InProcess (1)", "Success (2)", "Warning (3)", "Failure (4)"):
        assert accepted in message


def test_display_is_the_platform_pascal_case_name() -> None:
    assert OperationType.CREATE_ADD.display == "CreateAdd"
    assert OperationType.SET_PASSWORD.display == "SetPassword"
    assert JobResult.IN_PROCESS.display == "InProcess"


def test_members_of_both_enumerations_with_one_value_keep_their_own_names() -> None:
    # JobResult.SUCCESS == OperationType.ADD == 2: names kept by member would mix them up.
    for value in range(5):
        assert JobResult(value).display != OperationType(value).display or value == 0
    assert [JobResult(2).display, OperationType(2).display] == ["Success", "Add"]
    assert [OperationType(4).display, JobResult(4).display] == ["Create", "Failure"]


def test_a_spelling_parsed_once_parses_to_the_same_member_in_its_own_enumeration() -> None:
    assert JobResult.parse("success") is JobResult.SUCCESS
    assert OperationType.parse("add") is OperationType.ADD
    with pytest.raises(ValueError, match="unknown value 'success'"):
        OperationType.parse("success")
    with pytest.raises(ValueError, match="unknown value 'add'"):
        JobResult.parse("add")


@given(st.sampled_from(list(JobResult) + list(OperationType)))
def test_every_member_parses_back_from_its_value_display_and_name(member: JobResult) -> None:
    kind = type(member)
    assert kind.parse(member.value) is member
    assert kind.parse(str(member.value)) is member
    assert kind.parse(member.display) is member
    assert kind.parse(member.name) is member
    assert kind.parse(member.name.lower().replace("_", "-")) is member
