"""jobhooks.testing.sample_context: a realistic context, overridable in either spelling."""

import uuid

import pytest

from jobhooks import JobCompleteContext, JobResult, OperationType
from jobhooks.errors import ContextError
from jobhooks.testing import SAMPLE_AGENT_ID, sample_context


def test_the_sample_is_a_failed_inventory_job() -> None:
    context = sample_context()
    assert isinstance(context, JobCompleteContext)
    assert context.failed
    assert context.operation_type is OperationType.INVENTORY
    assert context.agent_id == SAMPLE_AGENT_ID
    assert context.request_timestamp is not None and context.request_timestamp.tzinfo is not None
    assert sample_context().job_id != context.job_id, "each sample is a new job"


def test_overrides_in_snake_case_and_pascal_case() -> None:
    job_type_id = uuid.uuid4()
    context = sample_context(
        JobResult="Success", CurrentRetryCount=4, job_type_id=str(job_type_id), JobType="Custom"
    )
    assert context.job_result is JobResult.SUCCESS
    assert context.current_retry_count == 4
    assert context.job_type_id == job_type_id
    assert context.job_type == "Custom"


def test_invalid_overrides_are_context_errors() -> None:
    with pytest.raises(ContextError) as caught:
        sample_context(job_result="Exploded", Bogus=1)
    assert {problem.field for problem in caught.value.problems} == {"job_result", "Bogus"}
