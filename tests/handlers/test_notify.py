"""``notify`` delivering for real through Apprise's ``json://`` to a loopback HTTP receiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import HttpReceiver

from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.registry.build import load
from jobhooks.testing import sample_context

WriteConfig = Callable[..., Path]

PASSWORD = "apprise-pw-Qm4x"
TOKEN = "header-token-Vb81"


@pytest.fixture
def notify_url(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> str:
    """A json:// URL to the receiver carrying a password and a header token, in NOTIFY_URL."""
    url = f"json://pki:{PASSWORD}@127.0.0.1:{http_receiver.port}/alerts?+X-Token={TOKEN}"
    monkeypatch.setenv("NOTIFY_URL", url)
    return url


def notify_config(properties: str = 'urls = "env:NOTIFY_URL"') -> str:
    return f"""
        [[handlers]]
        name = "page-oncall"
        type = "notify"
        job_types = "*"
        timeout = 10
        [handlers.properties]
        {properties}
    """


def attempt(config: Path, **context: Any) -> Outcome:
    registered = load(config).registry.get("page-oncall")
    assert registered is not None
    return asyncio.run(run_attempt(registered, sample_context(**context)))


def test_a_failure_is_delivered_with_its_title_and_body(
    write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str
) -> None:
    context = {"client_machine": "orch07.example.com", "message": "store unreachable"}
    outcome = attempt(write_config(notify_config()), current_retry_count=4, **context)
    assert outcome.succeeded, outcome.error
    (request,) = http_receiver.requests
    assert (request.method, request.path) == ("POST", "/alerts")
    assert request.headers["x-token"] == TOKEN
    assert request.headers["authorization"].startswith("Basic ")
    document = json.loads(request.body)
    assert document["title"] == "Inventory job Failure on orch07.example.com"
    body = document["message"]
    assert "ended Failure on orch07.example.com" in body
    assert "retry count 4." in body
    assert body.endswith("\nstore unreachable")
    assert document["type"] == "failure", "the services' severity follows the job's result"


def test_title_and_body_templates(
    write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str
) -> None:
    properties = (
        'urls = ["env:NOTIFY_URL"]\n'
        'title = "{{ job_type }} #{{ job_history_id }}"\n'
        'body = "{{ client_machine }} says {{ message }}"'
    )
    config = write_config(notify_config(properties))
    assert attempt(config, job_history_id=2170, message="{{ 7*7 }}").succeeded
    document = json.loads(http_receiver.requests[0].body)
    assert document["title"] == "Inventory #2170"
    assert document["message"] == "orchestrator01.example.com says {{ 7*7 }}"


@pytest.mark.parametrize("result", ["success", "warning", "unknown"])
def test_by_default_only_failures_notify(
    write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str, result: str
) -> None:
    outcome = attempt(write_config(notify_config()), job_result=result)
    assert outcome.succeeded, outcome.error
    assert http_receiver.requests == []


def test_results_chooses_which_completions_notify(
    write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str
) -> None:
    config = write_config(
        notify_config('urls = "env:NOTIFY_URL"\nresults = ["Success", "warning"]')
    )
    for result in ("success", "warning", "failure"):
        assert attempt(config, job_result=result).succeeded
    documents = [json.loads(request.body) for request in http_receiver.requests]
    assert [(document["title"], document["type"]) for document in documents] == [
        ("Inventory job Success on orchestrator01.example.com", "success"),
        ("Inventory job Warning on orchestrator01.example.com", "warning"),
    ]


def test_a_failing_endpoint_is_a_failed_attempt_without_the_secrets(
    cli: Any, write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str
) -> None:
    http_receiver.respond = lambda request: (500, b"internal error")
    config = write_config(notify_config())
    outcome = attempt(config)
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith("NotifyError: Apprise could not deliver to every URL")
    assert f"json://pki:****@127.0.0.1:{http_receiver.port}/alerts" in outcome.error
    result = cli("test-handler", "page-oncall", "-c", str(config), "--traceback")
    assert result.exit_code == 1
    assert "NotifyError" in result.stdout
    for shown in (outcome.error, outcome.traceback or "", result.output):
        assert PASSWORD not in shown
        assert TOKEN not in shown


def test_an_unknown_scheme_is_a_registration_error_that_does_not_echo_the_url(
    cli: Any, write_config: WriteConfig
) -> None:
    properties = 'urls = ["json://127.0.0.1:9/x", "nosuchservice://user:hidden-Pw3@example.com/"]'
    result = cli("validate", "-c", str(write_config(notify_config(properties))))
    assert result.exit_code == 1
    assert (
        "handlers[0] 'page-oncall': property urls[1]: Apprise does not recognise" in result.stderr
    )
    assert "hidden-Pw3" not in result.output and "nosuchservice" not in result.output


def test_an_unknown_result_is_a_registration_error(cli: Any, write_config: WriteConfig) -> None:
    properties = 'urls = "json://127.0.0.1:9/x"\nresults = ["failure", "exploded"]'
    result = cli("validate", "-c", str(write_config(notify_config(properties))))
    assert result.exit_code == 1
    assert "'page-oncall': property results:" in result.stderr
    assert "'exploded'" in result.stderr


def test_urls_are_never_listed_in_clear(
    cli: Any, write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str
) -> None:
    literal = notify_url.replace(PASSWORD, PASSWORD + "-literal")
    properties = f'urls = ["env:NOTIFY_URL", "{literal}"]'
    config = write_config(notify_config(properties))
    for command in ("validate", "handlers"):
        result = cli(command, "-c", str(config))
        assert result.exit_code == 0, result.output
        assert PASSWORD not in result.output and TOKEN not in result.output
        assert "/alerts" not in result.output
    listing = cli("handlers", "-c", str(config)).stdout
    assert "urls=env:NOTIFY_URL, **********" in listing
