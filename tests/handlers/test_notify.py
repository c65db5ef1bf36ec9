"""``notify`` delivering for real through Apprise's ``json://`` to a loopback HTTP receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import HttpReceiver, Received, SmtpSink

from jobhooks import JobCompleteContext
from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.handlers import notify
from jobhooks.registry.build import load
from jobhooks.registry.matching import RegisteredHandler
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


def registered(config: Path) -> RegisteredHandler:
    handler = load(config).registry.get("page-oncall")
    assert handler is not None
    return handler


def attempt(config: Path, **context: Any) -> Outcome:
    return asyncio.run(run_attempt(registered(config), sample_context(**context)))


def deliver(handler: RegisteredHandler, *contexts: JobCompleteContext) -> list[Outcome]:
    """Run the attempts in order on one handler and one event loop, as a worker does."""

    async def run() -> list[Outcome]:
        return [await run_attempt(handler, context) for context in contexts]

    return asyncio.run(run())


def retries(context: JobCompleteContext, attempts: int) -> list[JobCompleteContext]:
    """``context``'s run attempted ``attempts`` times."""
    return [dataclasses.replace(context, attempt=n) for n in range(1, attempts + 1)]


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


def test_templates_run_in_a_child_process_too(
    write_config: WriteConfig, http_receiver: HttpReceiver, notify_url: str
) -> None:
    """isolation = "process" sends the handler, its compiled templates with it, to a child
    process (a compiled template could not be sent, so validate refused the registration)."""
    config = write_config(
        notify_config(
            'urls = ["env:NOTIFY_URL"]\ntitle = "{{ job_type }} #{{ job_history_id }}"'
        ).replace("timeout = 10", 'timeout = 10\n        isolation = "process"')
    )

    assert attempt(config, job_history_id=2171).succeeded
    assert json.loads(http_receiver.requests[0].body)["title"] == "Inventory #2171"


@pytest.mark.parametrize("result", ["success", "warning", "unknown"])
def test_by_default_only_failures_notify(
    write_config: WriteConfig,
    http_receiver: HttpReceiver,
    notify_url: str,
    result: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, "jobhooks.handlers.notify"):
        outcome = attempt(write_config(notify_config()), job_result=result)
    assert outcome.succeeded, outcome.error
    assert http_receiver.requests == []
    assert "not sent: the job ended" in caplog.text and "results = ['failure']" in caplog.text


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
    assert f"urls[0] json://127.0.0.1:{http_receiver.port}" in outcome.error
    assert "pki" not in outcome.error and "/alerts" not in outcome.error
    result = cli("test-handler", "page-oncall", "-c", str(config), "--traceback")
    assert result.exit_code == 1
    assert "NotifyError" in result.stdout
    for shown in (outcome.error, outcome.traceback or "", result.output):
        assert PASSWORD not in shown
        assert TOKEN not in shown


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("nosuchservice://user:hidden-Pw3@example.com/", ("hidden-Pw3", "nosuchservice")),
        ("json://[::1/hidden-Path7", ("hidden-Path7",)),  # cannot even be parsed
    ],
)
def test_a_url_apprise_cannot_use_is_a_registration_error_that_does_not_echo_it(
    cli: Any, write_config: WriteConfig, url: str, hidden: tuple[str, ...]
) -> None:
    properties = f'urls = ["json://127.0.0.1:9/x", "{url}"]'
    result = cli("validate", "-c", str(write_config(notify_config(properties))))
    assert result.exit_code == 1
    assert (
        "handlers[0] 'page-oncall': property urls[1]: Apprise does not recognise" in result.stderr
    )
    for part in hidden:
        assert part not in result.output


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


# What an Apprise URL holds besides its scheme and host is secret: the user and password,
# a webhook's path, a header's value in the query, an ntfy topic (its access secret).

APPRISE_USER, APPRISE_PASSWORD = "appuser-Hq3", "APPRISEPASS-Zt8"
PATH_SECRET, HEADER_SECRET, TOPIC = "PATHSECRET-Wd4", "HDRSECRET2-Kp9", "SECRETTOPIC-Nc5"
URL_SECRETS = (APPRISE_USER, APPRISE_PASSWORD, PATH_SECRET, HEADER_SECRET, TOPIC)


def secret_urls(port: int) -> str:
    """A json:// URL and an ntfy:// URL to a receiver on ``port``, as a ``urls`` property."""
    json_url = (
        f"json://{APPRISE_USER}:{APPRISE_PASSWORD}@127.0.0.1:{port}/app/{PATH_SECRET}"
        f"?+X-Token={HEADER_SECRET}"
    )
    return f'urls = ["{json_url}", "ntfy://127.0.0.1:{port}/{TOPIC}"]'


def assert_no_url_secret(*texts: str | None) -> None:
    for text in texts:
        for part in URL_SECRETS:
            assert part.casefold() not in (text or "").casefold(), f"{part!r} leaked: {text!r}"


def test_a_failed_delivery_names_each_url_by_scheme_and_host_only(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    http_receiver.respond = lambda request: (500, b"internal error")
    outcome = attempt(write_config(notify_config(secret_urls(http_receiver.port))))
    assert not outcome.succeeded
    where = f"127.0.0.1:{http_receiver.port}"
    assert outcome.error == (
        "NotifyError: Apprise could not deliver to every URL; failed: "
        f"urls[0] json://{where}, urls[1] ntfy://{where}"
    )
    assert_no_url_secret(outcome.error, outcome.traceback)
    assert {request.path for request in http_receiver.requests} == {f"/app/{PATH_SECRET}", "/"}


def test_apprise_logs_no_secret_part_of_the_urls(
    write_config: WriteConfig, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.respond = lambda request: (500, b"internal error")
    outcome = attempt(write_config(notify_config(secret_urls(http_receiver.port))))
    assert not outcome.succeeded
    assert "Failed to send ntfy notification" in caplog.text, "Apprise logged its failures"
    assert_no_url_secret(caplog.text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("json://user:pw@hooks.example.com:8443/a/b?+X=y#z", "json://hooks.example.com:8443"),
        ("jsons://[::1]/a", "jsons://[::1]"),
        ("mailto://user:pw@gmail.com?to=oncall@example.com", "mailto://gmail.com"),
        # Where the host's place holds a secret: ntfy.sh's topic, a Slack or Telegram token.
        (f"ntfy://{TOPIC}", "ntfy://**********"),
        ("slack://xoxb-1234-5678-abcdef/#alerts", "slack://**********"),
        ("tgram://123456789:AAbbCCddEE/987654", "tgram://**********"),
    ],
)
def test_an_error_names_a_url_by_its_scheme_and_a_host_name_only(url: str, shown: str) -> None:
    assert notify._shown(url) == shown


def test_a_reload_leaves_one_log_filter_per_live_handler(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    apprise_log = logging.getLogger("apprise")
    gc.collect()
    before = len(apprise_log.filters)
    config = write_config(notify_config(secret_urls(http_receiver.port)))
    first = registered(config)
    assert len(apprise_log.filters) == before + 1
    del first
    second = registered(config)
    gc.collect()
    assert len(apprise_log.filters) == before + 1
    del second
    gc.collect()
    assert len(apprise_log.filters) == before


def test_a_retry_notifies_only_the_urls_that_failed(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    flaky = HttpReceiver()
    answers = iter([500, 500, 500, 200])
    flaky.respond = lambda request: (next(answers), b"")
    try:
        properties = (
            f'urls = ["json://127.0.0.1:{http_receiver.port}/good",'
            f' "json://127.0.0.1:{flaky.port}/flaky"]'
        )
        handler = registered(write_config(notify_config(properties)))
        outcomes = deliver(handler, *retries(sample_context(), 4))
    finally:
        flaky.close()
    assert [outcome.succeeded for outcome in outcomes] == [False, False, False, True]
    for failed in outcomes[:3]:
        assert failed.error == (
            "NotifyError: Apprise could not deliver to every URL; failed: "
            f"urls[1] json://127.0.0.1:{flaky.port}"
        )
    assert len(http_receiver.requests) == 1, "the working receiver is paged once"
    assert len(flaky.requests) == 4


def test_a_run_is_forgotten_once_it_succeeds_or_past_the_bound(
    write_config: WriteConfig, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "REMEMBERED_RUNS", 2)
    flaky = HttpReceiver()
    flaky.respond = lambda request: (500, b"")
    try:
        properties = (
            f'urls = ["json://127.0.0.1:{http_receiver.port}/good",'
            f' "json://127.0.0.1:{flaky.port}/flaky"]'
        )
        handler = registered(write_config(notify_config(properties)))
        one, two, three = (sample_context() for _ in range(3))
        deliver(handler, one, two, three)
        assert len(http_receiver.requests) == 3
        flaky.respond = lambda request: (200, b"")
        retried = [dataclasses.replace(context, attempt=2) for context in (three, one)]
        assert all(outcome.succeeded for outcome in deliver(handler, *retried))
        assert len(http_receiver.requests) == 4, "the oldest run was forgotten: sent again"
        assert all(outcome.succeeded for outcome in deliver(handler, *retried))
        assert len(http_receiver.requests) == 6, "a run that succeeded is sent whole again"
    finally:
        flaky.close()


def test_job_data_is_text_not_markup_in_an_html_service(
    write_config: WriteConfig, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An orchestrator's message is data: a service that renders HTML (Apprise's mailto://,
    here to a real SMTP server) shows it as text, not as a link or an image the
    recipient's mail reader would render (and fetch)."""
    monkeypatch.setenv(
        "NOTIFY_URL",
        f"mailto://{smtp_sink.host}:{smtp_sink.port}"
        "?from=jobhooks@example.com&to=oncall@example.com&mode=insecure",
    )
    markup = '<a href="https://evil.example/login">re-enter your password</a>'
    outcome = attempt(
        write_config(notify_config()),
        message=markup + '<img src="https://evil.example/pixel.gif">',
        client_machine="<b>orch07</b>",
    )
    assert outcome.succeeded, outcome.error
    (message,) = smtp_sink.messages
    html = message.get_body(("html",))
    if html is not None:  # Apprise sends plain text alone, or an HTML part escaped
        shown = html.get_content()
        assert "<a href" not in shown and "<img" not in shown and "<b>" not in shown
    text = message.get_body(("plain",))
    assert text is not None and markup in text.get_content()


def test_receivers_that_never_finish_answering_hold_up_no_other_handler(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    """A send Apprise makes cannot be stopped once it started, and a receiver that takes
    the request but never answers keeps it going past every timeout: however many such
    sends are left running, other handlers' notifications still go out at once."""
    stuck = 40  # more than a thread pool of a fixed size Apprise could share holds

    def respond(request: Received) -> tuple[int, bytes]:
        if request.path == "/stuck":
            http_receiver.release.wait(30)
        return 200, b""

    http_receiver.respond = respond
    config = write_config(f"""
        [[handlers]]
        name = "stuck"
        type = "notify"
        job_types = "*"
        timeout = 0.5
        [handlers.properties]
        urls = ["json://127.0.0.1:{http_receiver.port}/stuck?rto=30"]

        [[handlers]]
        name = "page-oncall"
        type = "notify"
        job_types = "*"
        timeout = 5
        [handlers.properties]
        urls = ["json://127.0.0.1:{http_receiver.port}/oncall"]
    """)
    registry = load(config).registry
    hanging, healthy = registry.get("stuck"), registry.get("page-oncall")
    assert hanging is not None and healthy is not None

    async def run() -> tuple[list[Outcome], Outcome]:
        contexts = [sample_context() for _ in range(stuck)]
        timed_out = await asyncio.gather(*(run_attempt(hanging, c) for c in contexts))
        return timed_out, await run_attempt(healthy, sample_context())

    timed_out, outcome = asyncio.run(run())
    assert [o.error for o in timed_out] == ["timed out after 0.5 s"] * stuck
    assert outcome.succeeded, outcome.error
    assert outcome.duration < 2
