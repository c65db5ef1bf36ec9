"""The built-in handlers deliver a digest as one message: the count in the subject or
title, every completion listed (up to a cap, then "and N more"), the webhook's JSON
``{"type": "digest", "completions": [...]}`` signed as any other delivery."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import HttpReceiver, SmtpSink
from standardwebhooks import Webhook

from jobhooks import JobCompleteContext
from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.registry.build import load
from jobhooks.sdk.trigger import Trigger
from jobhooks.testing import sample_context, sample_digest

WriteConfig = Callable[..., Path]
SECRET = "whsec_" + base64.b64encode(b"jobhooks-test-signing-key-32byte").decode()


def burst(count: int, machine: str = "orch09.example.com", **fields: Any) -> JobCompleteContext:
    """A digest of ``count`` failures on one machine, the n-th with message "failure n"."""
    return sample_digest(
        *(
            sample_context(client_machine=machine, message=f"failure {n}", **fields)
            for n in range(count)
        )
    )


def attempt(config: Path, name: str, context: JobCompleteContext) -> Outcome:
    registered = load(config).registry.get(name)
    assert registered is not None
    return asyncio.run(run_attempt(registered, context))


def test_a_webhook_digest_is_one_signed_delivery_with_every_completion(
    write_config: WriteConfig, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    config = write_config(
        f"""
        [[handlers]]
        name = "hook"
        type = "webhook"
        job_types = "*"
        [handlers.properties]
        url = "http://127.0.0.1:{http_receiver.port}/hook"
        secret = "env:WEBHOOK_SECRET"
        """
    )
    digest = burst(3)
    assert attempt(config, "hook", digest).succeeded
    (request,) = http_receiver.requests
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert payload["type"] == "digest"
    assert payload["count"] == 3
    completions = payload["completions"]
    assert [c["message"] for c in completions] == ["failure 0", "failure 1", "failure 2"]
    assert [c["completion_id"] for c in completions] == [m.completion_id for m in digest.group]


@pytest.fixture
def notify(
    write_config: WriteConfig, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A notify registration "page" delivering to the receiver through Apprise's json://."""
    monkeypatch.setenv("NOTIFY_URL", f"json://127.0.0.1:{http_receiver.port}/alerts")
    return write_config(
        """
        [[handlers]]
        name = "page"
        type = "notify"
        job_types = "*"
        [handlers.properties]
        urls = "env:NOTIFY_URL"
        """
    )


def test_a_notify_digest_has_the_count_in_its_title_and_lists_each_completion(
    notify: Path, http_receiver: HttpReceiver
) -> None:
    mixed = sample_digest(
        sample_context(client_machine="orch09", message="disk full"),
        sample_context(client_machine="orch09", job_result="Success", message=None),
        sample_context(client_machine="orch09", message="store locked"),
    )
    assert attempt(notify, "page", mixed).succeeded
    (request,) = http_receiver.requests
    document = json.loads(request.body)
    # The default results filter (failures) applies to each completion of the digest.
    assert document["title"] == "Digest: 2 Inventory jobs on orch09: 2 Failure"
    lines = document["message"].splitlines()
    assert len(lines) == 2
    assert "disk full" in lines[0] and "store locked" in lines[1]


def test_a_long_digest_lists_the_first_fifty_and_says_how_many_more(
    notify: Path, http_receiver: HttpReceiver
) -> None:
    assert attempt(notify, "page", burst(73)).succeeded
    document = json.loads(http_receiver.requests[0].body)
    assert document["title"].startswith("Digest: 73 Inventory jobs")
    lines = document["message"].splitlines()
    assert len(lines) == 51
    assert lines[-1] == "... and 23 more"


def mail_config(write_config: WriteConfig, sink: SmtpSink, kind: str, extra: str = "") -> Path:
    return write_config(
        f"""
        [[handlers]]
        name = "mail"
        type = "{kind}"
        job_types = "*"
        [handlers.properties]
        SmtpServer = "{sink.host}"
        SmtpPort = {sink.port}
        MailFrom = "jobhooks@example.com"
        EmailRecipients = "pki-team@example.com"
        {extra}
        """
    )


def test_send_email_sends_one_mail_for_a_digest(
    write_config: WriteConfig, smtp_sink: SmtpSink
) -> None:
    config = mail_config(write_config, smtp_sink, "send-email")
    assert attempt(config, "mail", burst(4)).succeeded
    (message,) = smtp_sink.messages
    assert message["Subject"] == (
        "Orchestrator digest: 4 Inventory jobs on orch09.example.com: 4 Failure"
    )
    body = message.get_content()
    assert body.startswith("4 orchestrator jobs completed")
    listed = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(listed) == 4
    assert all(f"failure {n}" in body for n in range(4))


def test_repeated_failure_email_mails_a_digest_of_what_passed_its_rule(
    write_config: WriteConfig, smtp_sink: SmtpSink
) -> None:
    config = mail_config(write_config, smtp_sink, "repeated-failure-email", "RetryThreshold = 2")
    digest = sample_digest(
        sample_context(client_machine="orch09", current_retry_count=0, message="first"),
        sample_context(client_machine="orch09", current_retry_count=2, message="second"),
        sample_context(client_machine="orch09", current_retry_count=5, message="third"),
    )
    assert attempt(config, "mail", digest).succeeded
    (message,) = smtp_sink.messages
    assert message["Subject"] == "Orchestrator Jobs Failed: 2 Inventory jobs on orch09: 2 Failure"
    body = message.get_content()
    assert "second" in body and "third" in body and "first" not in body


def test_a_digest_of_recoveries_says_recovered(
    write_config: WriteConfig, smtp_sink: SmtpSink
) -> None:
    config = mail_config(write_config, smtp_sink, "repeated-failure-email")
    recovered = Trigger("recovered", 3, None, "recovered after 3 consecutive failures")
    digest = sample_digest(
        *(
            sample_context(client_machine="orch09", job_result="Success", trigger=recovered)
            for _ in range(2)
        )
    )
    assert attempt(config, "mail", digest).succeeded
    (message,) = smtp_sink.messages
    assert (
        message["Subject"] == "Orchestrator Jobs Recovered: 2 Inventory jobs on orch09: 2 Success"
    )


def test_templates_see_the_group(write_config: WriteConfig, smtp_sink: SmtpSink) -> None:
    config = mail_config(
        write_config,
        smtp_sink,
        "send-email",
        'subject = "{{ group_size }} on {{ client_machine }}"\n'
        'body = "{% for c in group %}{{ c.message }};{% endfor %}"',
    )
    assert attempt(config, "mail", burst(3)).succeeded
    (message,) = smtp_sink.messages
    assert message["Subject"] == "3 on orch09.example.com"
    assert message.get_content().strip() == "failure 0;failure 1;failure 2;"


def test_a_run_of_one_completion_is_a_group_of_one() -> None:
    context = sample_context()
    assert context.group == (context,)
    assert not context.is_digest
