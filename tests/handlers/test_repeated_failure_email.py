"""``repeated-failure-email`` through ``jobhooks test-handler``, against a real SMTP server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from jobhooks.dispatch.execute import run_attempt
from jobhooks.registry.build import load
from jobhooks.sdk.trigger import Trigger
from jobhooks.testing import sample_context

WriteConfig = Callable[[str], Path]

INVENTORY = "7B6BBC1B-D802-4B09-BEC9-F5C221083130"


@pytest.fixture
def config(write_config: WriteConfig, smtp_sink, seed_toml: str, smtp_password: str) -> Path:
    """The seed registration, pointed at the loopback SMTP server (threshold 2)."""
    text = seed_toml.replace('SmtpServer = "smtp.example.com"', f'SmtpServer = "{smtp_sink.host}"')
    text = text.replace("SmtpPort = 587", f"SmtpPort = {smtp_sink.port}")
    text = text.replace('Username = "jobhooks@example.com"\nPassword = "env:SMTP_PASSWORD"\n', "")
    return write_config(text)


def fire(cli, config: Path, *args: str):  # type: ignore[no-untyped-def]
    result = cli("test-handler", "SendEmail_RepeatedFailureHandler", "-c", str(config), *args)
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout
    return result


@pytest.mark.parametrize("retry_count", ["0", "1"])
def test_below_the_threshold_nothing_is_sent(
    cli, config: Path, smtp_sink, retry_count: str
) -> None:
    result = fire(cli, config, "--result", "failure", "--retry-count", retry_count)
    assert smtp_sink.messages == []
    assert f"not sent: retry count {retry_count} is under RetryThreshold 2" in result.stdout


@pytest.mark.parametrize("retry_count", ["2", "3", "10"])
def test_at_and_above_the_threshold_one_mail_is_sent(
    cli, config: Path, smtp_sink, retry_count: str
) -> None:
    fire(cli, config, "--result", "failure", "--retry-count", retry_count)
    (message,) = smtp_sink.messages
    assert message["Subject"] == "Orchestrator Inventory Job Failed"
    assert message["From"] == "jobhooks@example.com"
    assert message["To"] == "pki-team@example.com, oncall@example.com"
    (envelope,) = smtp_sink.envelopes
    assert envelope == ("jobhooks@example.com", ["pki-team@example.com", "oncall@example.com"])
    body = message.get_content()
    assert f"Retry count {retry_count}, threshold 2." in body
    assert INVENTORY.lower() in body


def test_the_body_begins_with_the_sample_lines_exactly(
    cli, config: Path, smtp_sink, tmp_path: Path
) -> None:
    job_id = "9f0e4c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
    context = tmp_path / "job.json"
    context.write_text(json.dumps({"JobType": "WinCertInventory", "JobId": job_id.upper()}))
    fire(cli, config, "--retry-count", "3", "--context-json", str(context))
    (message,) = smtp_sink.messages
    lines = message.get_content().splitlines()
    assert lines[:5] == [
        "Orchestrator Job failed too many times:",
        "\tType: WinCertInventory",
        f"\tJobId: {job_id}",
        "\tRetries: 3",
        "",
    ]
    assert "Orchestrator:    orchestrator01.example.com" in "\n".join(lines[5:])


@pytest.mark.parametrize("result", ["success", "warning", "unknown", "in-process"])
def test_anything_but_a_failure_never_sends(cli, config: Path, smtp_sink, result: str) -> None:
    fire(cli, config, "--result", result, "--retry-count", "9")
    assert smtp_sink.messages == []


def test_the_subject_names_the_job_type(cli, config: Path, smtp_sink, tmp_path: Path) -> None:
    context = tmp_path / "job.json"
    context.write_text(json.dumps({"JobType": "WinCertInventory"}))
    fire(cli, config, "--retry-count", "2", "--context-json", str(context))
    (message,) = smtp_sink.messages
    assert message["Subject"] == "Orchestrator WinCertInventory Job Failed"


def test_a_crlf_in_the_job_type_cannot_add_a_header(
    cli, config: Path, smtp_sink, tmp_path: Path
) -> None:
    context = tmp_path / "job.json"
    context.write_text(json.dumps({"job_type": "Inventory\r\nBcc: evil@x"}))
    fire(cli, config, "--retry-count", "5", "--context-json", str(context))
    (message,) = smtp_sink.messages
    assert message["Bcc"] is None
    assert "evil@x" not in smtp_sink.envelopes[0][1]
    assert [key.lower() for key in message if key.lower() == "bcc"] == []
    subject = message["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert "Bcc: evil@x" in subject, "kept as harmless text"
    assert subject.startswith("Orchestrator Inventory") and subject.endswith("Job Failed")


def test_an_unreachable_smtp_server_is_a_failed_run(
    cli, write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = seed_toml.replace('"smtp.example.com"', '"127.0.0.1"')
    text = text.replace("SmtpPort = 587", f"SmtpPort = {port}")
    text = text.replace('Username = "jobhooks@example.com"\nPassword = "env:SMTP_PASSWORD"\n', "")
    result = cli(
        "test-handler", "SendEmail_RepeatedFailureHandler", "-c", str(write_config(text)),
        "--retry-count", "2",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert smtp_password not in result.output


def test_a_mail_the_rules_chose_says_why_instead_of_the_threshold(config: Path, smtp_sink) -> None:
    """Under rules (when = "failure-streak"), the threshold did not decide: the mail says
    what did, after the sample's lines (a count under the threshold read as a mistake)."""
    handler = load(config).registry.get("SendEmail_RepeatedFailureHandler")
    assert handler is not None
    streak = Trigger("failure-streak", 2, None, "failed 2 times in a row")
    context = sample_context(current_retry_count=1, trigger=streak)

    assert asyncio.run(run_attempt(handler, context)).succeeded
    (message,) = smtp_sink.messages
    lines = message.get_content().splitlines()
    assert lines[0] == "Orchestrator Job failed too many times:"
    assert "failed 2 times in a row." in lines
    assert not [line for line in lines if "threshold" in line]
