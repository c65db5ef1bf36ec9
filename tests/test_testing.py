"""jobhooks.testing: a realistic sample context, and handlers configured from their properties."""

import uuid
from pathlib import Path

import pytest

from jobhooks import JobCompleteContext, JobCompleteHandler, JobResult, OperationType, Secret
from jobhooks.errors import ConfigError, ContextError
from jobhooks.testing import SAMPLE_AGENT_ID, make_handler, sample_context


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


# make_handler


class Recorder(JobCompleteHandler):
    """Appends failed jobs to a file."""

    path: str
    min_retries: int = 0
    recipients: list[str] = []  # noqa: RUF012  (a handler property, read only)
    api_key: Secret | None = None

    def setup(self) -> None:
        if self.min_retries > 10:
            raise ValueError("property MinRetries: at most 10")
        self.ready = True

    def run_handler(self, context: JobCompleteContext) -> bool:
        if context.current_retry_count >= self.min_retries:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(context.job_type + "\n")
        return True


def test_make_handler_configures_a_handler_as_a_registration_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDER_KEY", "k-Wq3")
    out = tmp_path / "failures.jsonl"
    handler = make_handler(
        Recorder, Path=str(out), MinRetries="2", recipients="a@x,b@y", api_key="env:RECORDER_KEY"
    )
    assert isinstance(handler, Recorder)
    assert handler.min_retries == 2
    assert handler.recipients == ["a@x", "b@y"]
    assert handler.api_key is not None and handler.api_key.reveal() == "k-Wq3"
    assert handler.ready, "setup() ran"
    assert handler.name == "test"
    assert handler.run_handler(sample_context(current_retry_count=1))
    assert handler.run_handler(sample_context(current_retry_count=2, job_type="Custom"))
    assert out.read_text(encoding="utf-8") == "Custom\n"


def test_make_handler_keeps_the_defaults_and_takes_a_name(tmp_path: Path) -> None:
    handler = make_handler(Recorder, name="record-failures", path=str(tmp_path / "f"))
    assert handler.min_retries == 0 and handler.api_key is None
    assert handler.name == "record-failures"


def test_make_handler_names_every_bad_property() -> None:
    with pytest.raises(ConfigError) as caught:
        make_handler(Recorder, MinRetries="many", Colour="red")
    assert caught.value.problems == (
        "property MinRetries: expected an integer, got 'many'",
        "property Colour: unknown property (this type takes: Path, MinRetries, Recipients, ApiKey)",
        "property Path: is required (a string)",
    )
    assert "Recorder" in str(caught.value)


def test_make_handler_lets_setup_refuse() -> None:
    with pytest.raises(ValueError, match="at most 10"):
        make_handler(Recorder, path="x", min_retries=11)
