"""``webhook`` against a real HTTP receiver on loopback, verified with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import gzip
import http
import http.server
import json
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HttpReceiver, Received, TestCertificates
from standardwebhooks import Webhook
from support.app import TestClient
from support.loopback import LoopbackServer
from support.reports import AGENT_A, report
from support.server import wait_for
from support.server import write_config as write_server_config
from support.tokens import make_token

from jobhooks import JobCompleteContext
from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.registry.build import load
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.service.runtime import Runtime
from jobhooks.testing import sample_context
from jobhooks.web import create_app

WriteConfig = Callable[..., Path]

SECRET = "whsec_" + base64.b64encode(b"jobhooks-test-signing-key-32byte").decode()


@pytest.fixture
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    return SECRET


def webhook_config(url: str, properties: str = "", **policy: Any) -> str:
    settings = "\n".join(f"{key} = {json.dumps(value)}" for key, value in policy.items())
    return f"""
        [[handlers]]
        name = "hook"
        type = "webhook"
        job_types = "*"
        {settings}
        [handlers.properties]
        url = "{url}"
        {properties}
    """


def registered(config: Path) -> RegisteredHandler:
    handler = load(config).registry.get("hook")
    assert handler is not None
    return handler


def deliver(handler: RegisteredHandler, *contexts: JobCompleteContext) -> list[Outcome]:
    """Run the attempts in order, on one event loop as a worker does."""

    async def run() -> list[Outcome]:
        return [await run_attempt(handler, context) for context in contexts]

    return asyncio.run(run())


def verified(request: Received, secret: str = SECRET) -> Any:
    """The payload, once standardwebhooks accepts the signature (raises otherwise)."""
    return Webhook(secret).verify(request.body, request.headers)


def test_a_signed_delivery_carries_the_whole_context(
    write_config: WriteConfig, http_receiver: HttpReceiver, webhook_secret: str
) -> None:
    config = write_config(
        webhook_config(f"{http_receiver.url}/hooks/jobs", 'secret = "env:WEBHOOK_SECRET"')
    )
    context = sample_context(job_history_id=2170, certificate_id=77, current_retry_count=2)
    before = datetime.now(UTC).replace(microsecond=0)
    (outcome,) = deliver(registered(config), context)
    assert outcome.succeeded, outcome.error
    (request,) = http_receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/jobs")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-signature"].startswith("v1,")
    payload = verified(request)
    assert set(payload) == {"type", "schema_version", "timestamp", "data"}
    assert payload["type"] == "job.completed"
    assert payload["schema_version"] == 1
    moment = datetime.fromisoformat(payload["timestamp"])
    assert payload["timestamp"].endswith("Z")
    assert before <= moment <= datetime.now(UTC)
    assert int(request.headers["webhook-timestamp"]) == int(moment.timestamp())
    assert payload["data"] == context.to_dict()
    assert payload["data"]["job_result"] == "Failure"
    assert payload["data"]["job_history_id"] == 2170


def test_a_tampered_body_or_another_secret_fails_verification(
    write_config: WriteConfig, http_receiver: HttpReceiver, webhook_secret: str
) -> None:
    config = write_config(webhook_config(http_receiver.url, 'secret = "env:WEBHOOK_SECRET"'))
    deliver(registered(config), sample_context())
    (request,) = http_receiver.requests
    tampered = dataclasses.replace(request, body=request.body.replace(b"Failure", b"Success"))
    with pytest.raises(Exception, match="No matching signature"):
        verified(tampered)
    other = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    with pytest.raises(Exception, match="No matching signature"):
        verified(request, other)


def test_custom_headers_arrive_and_without_a_secret_nothing_is_signed(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    properties = 'headers = { "X-Tenant" = "pki", Authorization = "Bearer receiver-token" }'
    config = write_config(webhook_config(http_receiver.url, properties))
    (outcome,) = deliver(registered(config), sample_context())
    assert outcome.succeeded, outcome.error
    (request,) = http_receiver.requests
    assert request.headers["x-tenant"] == "pki"
    assert request.headers["authorization"] == "Bearer receiver-token"
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-timestamp"].isdigit()
    assert "webhook-signature" not in request.headers
    assert json.loads(request.body)["type"] == "job.completed"


@pytest.mark.parametrize(("status", "final"), [(410, True), (404, False), (429, False)])
def test_only_410_gone_ends_the_run_without_retries(
    write_config: WriteConfig, http_receiver: HttpReceiver, status: int, final: bool
) -> None:
    http_receiver.respond = lambda request: (status, b"")
    config = write_config(webhook_config(http_receiver.url))
    (outcome,) = deliver(registered(config), sample_context())
    assert not outcome.succeeded
    assert outcome.final is final
    error = f"POST to {http_receiver.url[7:]} answered {status}"
    if final:
        assert (outcome.error or "").startswith(f"WebhookGoneError: {error} Gone")
        assert (outcome.error or "").endswith("(a permanent failure: not retried)")
    else:
        assert (outcome.error or "").startswith(f"WebhookError: {error}")


def test_a_retry_after_a_500_carries_the_same_webhook_id(
    write_config: WriteConfig, http_receiver: HttpReceiver, webhook_secret: str
) -> None:
    answers = iter([(500, b"receiver is down"), (200, b"")])
    http_receiver.respond = lambda request: next(answers)
    config = write_config(
        webhook_config(http_receiver.url, 'secret = "env:WEBHOOK_SECRET"\nshow_answer = true')
    )
    first = sample_context()
    retry = dataclasses.replace(first, attempt=2)
    failed, succeeded = deliver(registered(config), first, retry)
    assert not failed.succeeded
    assert failed.error is not None
    assert "answered 500" in failed.error and "receiver is down" in failed.error
    assert succeeded.succeeded, succeeded.error
    one, two = http_receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"]
    assert verified(one)["data"]["completion_id"] == verified(two)["data"]["completion_id"]


def test_no_connection_outlives_the_event_loop_of_its_delivery(
    cli: Any, write_config: WriteConfig
) -> None:
    receiver = HttpReceiver(keep_alive=True)
    try:
        config = write_config(webhook_config(receiver.url))
        for _ in range(2):
            result = cli("test-handler", "hook", "-c", str(config))
            assert result.exit_code == 0, result.output
        gc.collect()  # an unclosed socket would warn here, which fails the test
    finally:
        receiver.close()
    assert len(receiver.requests) == 2


def test_another_completion_gets_another_webhook_id(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    deliver(
        registered(write_config(webhook_config(http_receiver.url))),
        sample_context(),
        sample_context(),
    )
    one, two = http_receiver.requests
    assert one.headers["webhook-id"] != two.headers["webhook-id"]


def test_the_same_completion_through_test_handler_gets_the_same_id(
    cli: Any, write_config: WriteConfig, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    config = write_config(webhook_config(http_receiver.url))
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"completion_id": "0b4f6c1e-completion"}))
    for _ in range(2):
        result = cli("test-handler", "hook", "-c", str(config), "--context-json", str(context))
        assert result.exit_code == 0, result.output
    one, two = http_receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"]


@pytest.mark.parametrize("status", [301, 404, 500, 503])
@pytest.mark.parametrize("show", [False, True])
def test_a_non_2xx_answer_is_a_failed_attempt_naming_the_status(
    write_config: WriteConfig, http_receiver: HttpReceiver, status: int, show: bool
) -> None:
    http_receiver.respond = lambda request: (status, b"nope", {"location": "/elsewhere"})
    properties = "show_answer = true" if show else ""
    (outcome,) = deliver(
        registered(write_config(webhook_config(http_receiver.url, properties))), sample_context()
    )
    assert not outcome.succeeded
    reason = http.HTTPStatus(status).phrase
    answered = f"WebhookError: POST to 127.0.0.1:{http_receiver.port} answered {status} {reason}"
    assert outcome.error == (f"{answered}: 'nope'" if show else answered)
    assert len(http_receiver.requests) == 1, "a redirect is not followed"


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_redirect_to_another_host_is_not_followed(
    write_config: WriteConfig, http_receiver: HttpReceiver, webhook_secret: str, status: int
) -> None:
    elsewhere = HttpReceiver()
    http_receiver.respond = lambda request: (status, b"", {"location": f"{elsewhere.url}/x"})
    try:
        config = write_config(
            webhook_config(
                http_receiver.url,
                'secret = "env:WEBHOOK_SECRET"\nheaders = { authorization = "Bearer k-Zt4" }',
            )
        )
        (outcome,) = deliver(registered(config), sample_context())
    finally:
        elsewhere.close()
    assert not outcome.succeeded
    assert f"answered {status} " in (outcome.error or "")
    assert elsewhere.requests == []


class HugeAnswer:
    """A real HTTP receiver on loopback that answers every POST with ``status`` and a body of
    ``size`` bytes, written 64 KiB at a time until the client hangs up; ``sent`` counts the
    bytes it got out, ``done`` is set when it stopped writing."""

    CHUNK = 64 * 1024

    def __init__(self, status: int, size: int) -> None:
        self.status, self.size, self.sent = status, size, 0
        self.done = threading.Event()
        self.start = b"receiver is down; " + b"x" * (self.CHUNK - 18)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # a client that neither reads nor hangs up ends the answer here

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(receiver.status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(receiver.size))
                self.end_headers()
                self.close_connection = True
                try:
                    self.wfile.write(receiver.start)
                    receiver.sent = len(receiver.start)
                    while receiver.sent < receiver.size:
                        chunk = b"y" * min(receiver.CHUNK, receiver.size - receiver.sent)
                        self.wfile.write(chunk)
                        receiver.sent += len(chunk)
                except OSError:
                    pass  # the client hung up: what the test is about
                finally:
                    receiver.done.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = LoopbackServer(Handler)
        self.url = self._serving.origin

    def close(self) -> None:
        self._serving.close()


@pytest.mark.parametrize(("status", "show"), [(200, False), (200, True), (500, False), (500, True)])
def test_a_huge_answer_is_not_read_whole(
    write_config: WriteConfig, status: int, show: bool
) -> None:
    receiver = HugeAnswer(status, 50 * 2**20)
    try:
        properties = "show_answer = true" if show else ""
        config = write_config(webhook_config(receiver.url, properties))
        (outcome,) = deliver(registered(config), sample_context())
        assert receiver.done.wait(10), "the receiver is still writing: the client did not hang up"
    finally:
        receiver.close()
    assert outcome.succeeded is (status == 200), outcome.error
    if status == 500:
        answered = f"WebhookError: POST to {receiver.url[7:]} answered 500 Internal Server Error"
        shown = receiver.start[:200].decode()
        assert outcome.error == (f"{answered}: {shown!r}" if show else answered)
    assert receiver.sent < receiver.size // 4, f"read {receiver.sent} of {receiver.size} bytes"


class TrickledAnswer:
    """A real HTTP receiver on loopback that answers every POST at once with ``status`` and
    headers, then a body a byte at a time, every 50 ms, until closed: each read gets a byte
    well within any read timeout, but the answer never ends."""

    def __init__(self, status: int) -> None:
        self.requests = 0
        self.stop = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests += 1
                self.send_response(status)
                self.send_header("content-length", "1000000")
                self.end_headers()
                self.close_connection = True
                try:
                    while not receiver.stop.wait(0.05):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    pass  # the client hung up

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = LoopbackServer(Handler)
        self.url = self._serving.origin

    def close(self) -> None:
        self.stop.set()
        self._serving.close()


@pytest.mark.parametrize("status", [200, 500])
def test_an_answer_that_never_ends_is_judged_by_its_status(
    write_config: WriteConfig, status: int
) -> None:
    """A receiver that accepted the delivery (2xx) got it, however long the rest of its
    answer takes: an attempt that timed out reading it would be retried and deliver twice."""
    receiver = TrickledAnswer(status)
    try:
        config = write_config(webhook_config(receiver.url, "show_answer = true", timeout=3))
        (outcome,) = deliver(registered(config), sample_context())
    finally:
        receiver.close()
    assert receiver.requests == 1
    if status == 200:
        assert outcome.succeeded, outcome.error
    else:
        answered = f"WebhookError: POST to {receiver.url[7:]} answered 500 Internal Server Error"
        assert (outcome.error or "").startswith(f"{answered}: 'x"), outcome.error
    assert outcome.duration < 2.5


def test_a_compressed_answer_is_never_inflated(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    """A receiver may answer with a small gzip that inflates to gigabytes: jobhooks asks
    for the answer uncompressed and reads what comes as it comes."""
    bomb = gzip.compress(bytes(64 * 2**20))  # 64 MiB of zeros in about 64 KiB
    http_receiver.respond = lambda request: (500, bomb, {"content-encoding": "gzip"})
    config = write_config(webhook_config(http_receiver.url, "show_answer = true"))

    (outcome,) = deliver(registered(config), sample_context())

    assert not outcome.succeeded
    assert http_receiver.requests[0].headers["accept-encoding"] == "identity"
    # Shown as it came: gzip's own first byte, not the zeros it would inflate to.
    assert "answered 500 Internal Server Error: '\\x1f" in (outcome.error or "")


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    def slow(request: Received) -> tuple[int, bytes]:
        http_receiver.release.wait(10)
        return 200, b""

    http_receiver.respond = slow
    config = write_config(webhook_config(http_receiver.url, "request_timeout = 0.3"))
    (outcome,) = deliver(registered(config), sample_context())
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith(
        f"WebhookError: POST to 127.0.0.1:{http_receiver.port} failed: ReadTimeout"
    )


def test_the_registration_timeout_also_ends_a_hanging_delivery(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    http_receiver.respond = lambda request: (http_receiver.release.wait(10), (200, b""))[1]
    config = write_config(webhook_config(http_receiver.url, timeout=0.3))
    (outcome,) = deliver(registered(config), sample_context())
    assert not outcome.succeeded
    assert outcome.error == "timed out after 0.3 s"


def test_a_receiver_that_is_not_there_is_a_failed_attempt(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    url = http_receiver.url
    http_receiver.close()
    (outcome,) = deliver(registered(write_config(webhook_config(url))), sample_context())
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith(
        f"WebhookError: POST to 127.0.0.1:{http_receiver.port} failed: ConnectError"
    )


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        ('secret = "env:BAD_SECRET"', "property secret: expected a Standard Webhooks secret"),
        ('secret = "whsec_not base64!"', "property secret: the part after 'whsec_' is not base64"),
        ('headers = { "Webhook-Signature" = "v1,forged" }', "property headers: Webhook-Signature"),
        (
            'headers = { "webhook-id" = "msg_x" }',
            "property headers: webhook-id are set by jobhooks",
        ),
        ('headers = { "Content-Type" = "text/plain" }', "property headers: Content-Type"),
    ],
)
def test_bad_properties_are_registration_errors(
    cli: Any,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    properties: str,
    problem: str,
) -> None:
    monkeypatch.setenv("BAD_SECRET", "plain-shared-secret-Yt7")
    result = cli(
        "validate",
        "-c",
        str(write_config(webhook_config("https://hooks.example.com/x", properties))),
    )
    assert result.exit_code == 1
    assert f"handlers[0] 'hook': {problem}" in result.stderr
    assert "plain-shared-secret-Yt7" not in result.output


def test_a_url_that_is_not_http_is_a_registration_error(
    cli: Any, write_config: WriteConfig
) -> None:
    result = cli("validate", "-c", str(write_config(webhook_config("ftp://hooks.example.com/x"))))
    assert result.exit_code == 1
    assert "'hook': property url: expected an http:// or https:// URL" in result.stderr


def test_the_secret_is_never_shown(
    cli: Any, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(webhook_config("https://hooks.example.com/x", f'secret = "{SECRET}"'))
    for command in ("validate", "handlers"):
        result = cli(command, "-c", str(config))
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
        assert SECRET.removeprefix("whsec_") not in result.output


def test_a_receiver_behind_a_private_ca_is_trusted_through_ca_bundle(
    write_config: Callable[[str], Path], test_certificates: TestCertificates
) -> None:
    receiver = HttpReceiver(tls=test_certificates.server_context())
    try:
        trusted = registered(
            write_config(webhook_config(receiver.url, f'ca_bundle = "{test_certificates.ca}"'))
        )
        untrusted = registered(write_config(webhook_config(receiver.url), "other.toml"))
        with_ca, without_ca = (
            deliver(trusted, sample_context()),
            deliver(untrusted, sample_context()),
        )
    finally:
        receiver.close()
    assert with_ca[0].succeeded, with_ca[0].error
    assert not without_ca[0].succeeded
    assert "CERTIFICATE_VERIFY_FAILED" in (without_ca[0].error or "")
    assert len(receiver.requests) == 1


def test_a_receiver_behind_a_private_ca_is_trusted_in_a_child_process_too(
    write_config: Callable[[str], Path], test_certificates: TestCertificates
) -> None:
    receiver = HttpReceiver(tls=test_certificates.server_context())
    try:
        properties = f'ca_bundle = "{test_certificates.ca}"'
        config = write_config(webhook_config(receiver.url, properties, isolation="process"))
        (outcome,) = deliver(registered(config), sample_context())
    finally:
        receiver.close()
    assert outcome.succeeded, outcome.error
    assert len(receiver.requests) == 1


def test_the_trusted_certificates_are_loaded_once_not_on_every_delivery(
    write_config: WriteConfig, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a CA bundle takes milliseconds of the event loop every check-in shares."""
    loads: list[object] = []
    load_verify_locations = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        load_verify_locations(context, *args, **kwargs)

    handler = registered(write_config(webhook_config(http_receiver.url)))
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    outcomes = deliver(handler, *(sample_context() for _ in range(5)))
    assert all(outcome.succeeded for outcome in outcomes)
    assert len(loads) <= 1


# The url and headers carry credentials: no error, log line or API answer may show them.

SECRET_PATH = "/services/T0PATHSECRET/B0PATHSECRET/XXpathsecretXX"
SECRET_QUERY = "token=query-token-Kq2"
SECRET_USER, SECRET_PASSWORD = "hookuser-Lr6", "hook-password-Jw5"
SECRET_HEADER = "api-key-header-Vm9"
SECRET_PARTS = (
    "PATHSECRET",
    "pathsecret",
    "query-token-Kq2",
    SECRET_USER,
    SECRET_PASSWORD,
    SECRET_HEADER,
)


def secret_url(base: str) -> str:
    """``base`` (``http://host:port``) with credentials, a secret path and a query token."""
    scheme, _, address = base.partition("://")
    return f"{scheme}://{SECRET_USER}:{SECRET_PASSWORD}@{address}{SECRET_PATH}?{SECRET_QUERY}"


def secret_hook(base: str, *, show_answer: bool = False, **policy: Any) -> str:
    properties = f'headers = {{ "X-Api-Key" = "{SECRET_HEADER}" }}'
    if show_answer:
        properties += "\nshow_answer = true"
    return webhook_config(secret_url(base), properties, **policy)


def assert_no_secret(*texts: str | None) -> None:
    for text in texts:
        for part in SECRET_PARTS:
            assert part not in (text or ""), f"{part!r} leaked into {text!r}"


def test_a_failed_delivery_names_the_host_but_no_secret_part_of_the_url(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    # Many receivers echo the path they could not serve; that must not leak it either.
    http_receiver.respond = lambda request: (500, f"down; no route {request.path}".encode())
    config = write_config(secret_hook(http_receiver.url, show_answer=True))
    (outcome,) = deliver(registered(config), sample_context())
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith(
        f"WebhookError: POST to 127.0.0.1:{http_receiver.port} "
        "answered 500 Internal Server Error: 'down; no route "
    ), outcome.error
    assert_no_secret(outcome.error, outcome.traceback)
    (request,) = http_receiver.requests
    assert request.path == SECRET_PATH
    assert request.query == {"token": ["query-token-Kq2"]}
    assert request.headers["x-api-key"] == SECRET_HEADER
    expected = base64.b64encode(f"{SECRET_USER}:{SECRET_PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


ECHOES = {
    "the Basic header": lambda r: f"you sent {r.headers['authorization']}",
    "a query value, decoded": lambda r: f"invalid token {r.query['token'][0]}",
    "a path segment": lambda r: f"no such hook {r.path.split('/')[-1]}",
    "a header's token": lambda r: f"invalid key {r.headers['x-api-key'].upper()}",
    "the path, JSON-escaped": lambda r: json.dumps({"path": r.path}).replace("/", "\\/"),
    "the URL upper-cased": lambda r: f"bad url {r.path.upper()}?TOKEN=QUERY-TOKEN-KQ2",
}


@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
@pytest.mark.parametrize("show", [False, True])
def test_a_receiver_echoing_part_of_a_secret_never_shows_it(
    write_config: WriteConfig, http_receiver: HttpReceiver, echo: Any, show: bool
) -> None:
    http_receiver.respond = lambda request: (400, echo(request).encode())
    config = write_config(secret_hook(http_receiver.url, show_answer=show))

    (outcome,) = deliver(registered(config), sample_context())

    assert outcome.error is not None and "answered 400 Bad Request" in outcome.error
    encoded = base64.b64encode(f"{SECRET_USER}:{SECRET_PASSWORD}".encode()).decode()
    for text in (outcome.error, (outcome.error or "").casefold()):
        assert_no_secret(text, outcome.traceback)
        assert encoded not in text
        for part in SECRET_PARTS:
            assert part.casefold() not in text, f"{part!r} leaked into {text!r}"


def test_a_receiver_that_is_not_there_is_named_by_its_host_only(
    write_config: WriteConfig, http_receiver: HttpReceiver
) -> None:
    base = http_receiver.url
    http_receiver.close()
    (outcome,) = deliver(registered(write_config(secret_hook(base))), sample_context())
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith(
        f"WebhookError: POST to 127.0.0.1:{http_receiver.port} failed: ConnectError"
    ), outcome.error
    assert_no_secret(outcome.error, outcome.traceback)


def test_an_http_error_quoting_the_url_is_not_copied_into_the_error(
    write_config: WriteConfig, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    (outcome,) = deliver(registered(write_config(secret_hook(http_receiver.url))), sample_context())
    assert not outcome.succeeded
    assert outcome.error == (
        f"WebhookError: POST to 127.0.0.1:{http_receiver.port} failed: ConnectError"
    )
    assert_no_secret(outcome.error, outcome.traceback)


def test_url_and_headers_may_be_env_references(
    cli: Any,
    write_config: WriteConfig,
    http_receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_URL", secret_url(http_receiver.url))
    monkeypatch.setenv("HOOK_KEY", SECRET_HEADER)
    config = write_config(
        webhook_config("env:HOOK_URL", 'headers = { "X-Api-Key" = "env:HOOK_KEY" }')
    )
    (outcome,) = deliver(registered(config), sample_context())
    assert outcome.succeeded, outcome.error
    (request,) = http_receiver.requests
    assert (request.path, request.headers["x-api-key"]) == (SECRET_PATH, SECRET_HEADER)
    shown = cli("handlers", "-c", str(config))
    assert shown.exit_code == 0, shown.output
    assert "url=env:HOOK_URL" in shown.stdout
    assert "env:HOOK_KEY" in shown.stdout
    assert_no_secret(shown.output)


def test_a_viewer_reading_a_failed_run_sees_the_host_but_no_secret(
    tmp_path: Path, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    http_receiver.respond = lambda request: (500, f"no route {request.path}".encode())
    config = write_server_config(tmp_path, secret_hook(http_receiver.url, max_attempts=1))
    runtime = Runtime(load(config), config)
    store = runtime.store
    agent = {"Authorization": f"Bearer {make_token(store, 'agent', AGENT_A)}"}
    viewer = {"Authorization": f"Bearer {make_token(store, 'viewer')}"}
    with TestClient(create_app(runtime)) as client:
        posted = client.post("/api/v1/job-completions", json=report(), headers=agent)
        assert posted.status_code == 202, posted.text
        completion_id = posted.json()["id"]

        def dead_runs() -> Any:
            answer = client.get("/api/v1/handler-runs", params={"status": "dead"}, headers=viewer)
            assert answer.status_code == 200, answer.text
            return answer if answer.json()["items"] else None

        runs = wait_for(dead_runs, 15, "the webhook run to die")
        detail = client.get(f"/api/v1/job-completions/{completion_id}", headers=viewer)
        assert detail.status_code == 200, detail.text
    assert len(http_receiver.requests) == 1
    host = f"127.0.0.1:{http_receiver.port}"
    assert host in runs.text and host in detail.text
    assert "answered 500" in detail.text
    assert_no_secret(runs.text, detail.text, caplog.text)
