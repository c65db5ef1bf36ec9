"""The email handlers against SMTP servers that refuse, stall, drop or present a certificate
that cannot be verified: what a run reports, and who gets the mail how many times.

Every server is aiosmtpd on loopback.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import SmtpSink, TestCertificates

from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.registry.build import load
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.testing import sample_context

WriteConfig = Callable[..., Path]

PKI = "pki-team@example.com"
ONCALL = "oncall@example.com"


class RefusingSink(SmtpSink):
    """Refuses ``refused`` recipients with ``answer`` (as long as ``refusals`` lasts, then
    takes them), takes the others."""

    def __init__(self, refused: str, answer: str, refusals: int = 1_000) -> None:
        super().__init__()
        self.refused = refused
        self.answer = answer
        self.refusals = refusals

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == self.refused and self.refusals > 0:
            self.refusals -= 1
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def serve() -> Iterator[Callable[..., SmtpSink]]:
    controllers: list[Controller] = []

    def start(sink: SmtpSink, **options: Any) -> SmtpSink:
        controller = Controller(sink, hostname=sink.host, port=sink.port, **options)
        controller.start()
        controllers.append(controller)
        return sink

    yield start
    for controller in controllers:
        controller.stop()


def registration(
    write_config: WriteConfig, sink: SmtpSink, kind: str = "send-email", properties: str = ""
) -> RegisteredHandler:
    config = write_config(
        textwrap.dedent(f"""
        [smtp]
        host = "{sink.host}"
        port = {sink.port}
        mail_from = "jobhooks@example.com"

        [[handlers]]
        name = "mail-pki"
        type = "{kind}"
        job_types = "*"
        timeout = 30
        [handlers.properties]
        EmailRecipients = "{PKI}, {ONCALL}"
        """)
        + textwrap.dedent(properties)
    )
    registered = load(config).registry.get("mail-pki")
    assert registered is not None
    return registered


def attempt(registered: RegisteredHandler, **context: Any) -> Outcome:
    fields = {"job_result": "Failure", "current_retry_count": 5, **context}
    return asyncio.run(run_attempt(registered, sample_context(**fields)))


@pytest.mark.parametrize("kind", ["send-email", "repeated-failure-email"])
def test_a_recipient_refused_for_now_fails_the_attempt_and_its_retry_mails_only_them(
    write_config: WriteConfig, serve: Callable[..., SmtpSink], kind: str
) -> None:
    sink = serve(RefusingSink(ONCALL, "450 4.2.1 mailbox busy, try later", refusals=1))
    registered = registration(write_config, sink, kind)
    completion = "0191d7a2-0000-7000-8000-00000000aaaa"

    first = attempt(registered, completion_id=completion)
    assert not first.succeeded, "on-call never got the mail, yet the run succeeded"
    assert not first.final, "a mailbox busy for now is retried"
    assert ONCALL in (first.error or "") and "450" in (first.error or "")
    assert PKI not in (first.error or "")

    second = attempt(registered, completion_id=completion, attempt=2)
    assert second.succeeded, second.error
    # Each recipient got the mail once: the retry went to the one refused only.
    assert [rcpts for _sender, rcpts in sink.envelopes] == [[PKI], [ONCALL]]


def test_a_recipient_refused_for_good_is_named_with_the_servers_answer(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    sink = serve(RefusingSink(ONCALL, "550 5.1.1 no such user"))
    outcome = attempt(registration(write_config, sink))
    assert not outcome.succeeded
    # The mailbox does not exist: no retry can reach it, so the run is not retried.
    assert outcome.final
    assert outcome.error == (
        f"SmtpRejectedError: SMTP server {sink.host}:{sink.port} refused 1 of 2 recipients "
        f"(the others got the mail): {ONCALL}: 550 5.1.1 no such user (permanent) "
        "(a permanent failure: not retried)"
    )
    assert [rcpts for _sender, rcpts in sink.envelopes] == [[PKI]]


def test_recipients_refused_some_for_now_some_for_good_are_retried(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    class TwoRefusals(SmtpSink):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            return "550 5.1.1 no such user" if address == ONCALL else "452 4.2.2 mailbox full"

    sink = serve(TwoRefusals())
    outcome = attempt(registration(write_config, sink))
    assert not outcome.succeeded and not outcome.final
    assert (outcome.error or "").startswith(
        f"SmtpRecipientsError: SMTP server {sink.host}:{sink.port} refused every recipient: "
    )


def test_another_completion_is_mailed_to_every_recipient_again(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    sink = serve(RefusingSink(ONCALL, "450 4.2.1 busy", refusals=1))
    registered = registration(write_config, sink)
    assert not attempt(registered, completion_id="0191d7a2-0000-7000-8000-00000000000a").succeeded
    assert attempt(registered, completion_id="0191d7a2-0000-7000-8000-00000000000b").succeeded
    assert [rcpts for _sender, rcpts in sink.envelopes] == [[PKI], [PKI, ONCALL]]


class RejectingSink(SmtpSink):
    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer
        self.tries = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tries += 1
        return self.answer


@pytest.mark.parametrize(
    ("answer", "for_good"),
    [("451 4.3.0 try again later", False), ("554 5.7.1 message refused", True)],
)
def test_a_message_refused_at_data_is_a_failed_attempt_naming_the_answer(
    write_config: WriteConfig, serve: Callable[..., SmtpSink], answer: str, for_good: bool
) -> None:
    sink = serve(RejectingSink(answer))
    registered = registration(write_config, sink)
    for _ in range(2):
        outcome = attempt(registered)
        assert not outcome.succeeded
        assert answer.split()[0] in (outcome.error or "")
        assert outcome.final is for_good, "a 5xx answer is final, a 4xx one is retried"
    # Nothing was taken, so every retry offers the mail to every recipient again.
    assert sink.tries == 2


class StallingSink(SmtpSink):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(60)
        return "250 OK"


def test_a_server_stalling_after_the_data_is_bounded_by_the_smtp_timeout(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    sink = serve(StallingSink())
    registered = registration(write_config, sink, properties="SmtpTimeout = 1.5\n")
    started = time.monotonic()
    outcome = attempt(registered)
    assert not outcome.succeeded
    assert time.monotonic() - started < 10
    assert "Timed out" in (outcome.error or "")


class DroppingSink(SmtpSink):
    """Takes the message, then drops the connection instead of answering the final dot."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> None:
        await super().handle_DATA(server, session, envelope)
        server.transport.abort()


def test_a_connection_dropped_before_the_answer_to_data_is_a_failed_attempt(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    """The server may or may not have taken the mail: SMTP cannot tell, so the attempt
    fails and is retried (delivery is at least once: the mail may come twice)."""
    sink = serve(DroppingSink())
    outcome = attempt(registration(write_config, sink))
    assert not outcome.succeeded
    assert "Disconnected" in (outcome.error or "") or "EOF" in (outcome.error or "")
    assert len(sink.messages) == 1


def test_every_attempt_mails_a_message_of_its_own(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    """A mail sent again (after an attempt whose answer never came, or by a replay) has a
    Message-ID of its own: mail stores that drop duplicates by Message-ID would otherwise
    hide a replayed run's mail while jobhooks reports it sent."""
    sink = serve(DroppingSink())
    registered = registration(write_config, sink)
    completion = "0191d7a2-0000-7000-8000-00000000cccc"
    attempt(registered, completion_id=completion)
    attempt(registered, completion_id=completion, attempt=2)
    ids = [message["Message-ID"] for message in sink.messages]
    assert len(ids) == 2
    assert ids[0] != ids[1]


@pytest.mark.parametrize("server", ["127.0.0.2", "127.0.0.1"])
def test_a_starttls_certificate_it_cannot_verify_is_refused_saying_what_to_set(
    write_config: WriteConfig,
    serve: Callable[..., SmtpSink],
    test_certificates: TestCertificates,
    server: str,
) -> None:
    """127.0.0.2: signed by the CA named in CaBundle, but for another host; 127.0.0.1:
    signed by a CA the handler was not told about (as a self-signed certificate)."""
    sink = SmtpSink()
    sink.host = server
    serve(sink, tls_context=test_certificates.server_context(), require_starttls=True)
    properties = f'CaBundle = "{test_certificates.ca}"\n' if server == "127.0.0.2" else ""
    outcome = attempt(registration(write_config, sink, properties=properties))
    assert not outcome.succeeded
    error = outcome.error or ""
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert f"SMTP server {server}:{sink.port}" in error
    assert "ca_bundle" in error
    if server == "127.0.0.2":
        assert "127.0.0.2" in error and "SmtpServer" in error
    assert sink.messages == []


class DroppingAtQuitSink(SmtpSink):
    """Takes the message (250), then drops the connection when asked to QUIT."""

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        server.transport.abort()
        return "221 Bye"


def test_a_mail_the_server_took_is_not_sent_again_when_quit_goes_wrong(
    write_config: WriteConfig, serve: Callable[..., SmtpSink]
) -> None:
    sink = serve(DroppingAtQuitSink())
    outcome = attempt(registration(write_config, sink))
    assert outcome.succeeded, outcome.error
    assert len(sink.messages) == 1
