"""``send-email`` (and the SMTP options both email handlers share) against real SMTP servers.

Every server is aiosmtpd on 127.0.0.1: plain, with AUTH, with STARTTLS and
with implicit TLS, the last two presenting a certificate that a CA made for
the test signed, which the handler trusts through ``ca_bundle``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import SmtpSink, TestCertificates

from jobhooks.config import schema
from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.handlers import _mail as mail
from jobhooks.registry.build import load
from jobhooks.testing import sample_context

WriteConfig = Callable[..., Path]

INVENTORY = "7B6BBC1B-D802-4B09-BEC9-F5C221083130"
LOGIN = "relay-user@example.com"
PASSWORD = "relay-pw-4Kq9-never-print-me"


@dataclass(frozen=True)
class Delivery:
    """How one message reached the server."""

    encrypted: bool
    login: str | None


class RecordingSink(SmtpSink):
    """SmtpSink that also records whether the session was encrypted, and who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[Delivery] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = session.auth_data
        self.deliveries.append(
            Delivery(
                encrypted=server.transport.get_extra_info("ssl_object") is not None,
                login=data.login.decode() if isinstance(data, LoginPassword) else None,
            )
        )
        return await super().handle_DATA(server, session, envelope)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        if data.login.decode() == LOGIN and data.password.decode() == PASSWORD:
            return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)


StartSmtp = Callable[..., RecordingSink]


@pytest.fixture
def start_smtp() -> Iterator[StartSmtp]:
    """Start aiosmtpd on 127.0.0.1 with Controller/SMTP options; stopped after the test."""
    controllers: list[Controller] = []

    def start(*, auth: bool = False, port: int | None = None, **options: Any) -> RecordingSink:
        sink = RecordingSink()
        if port is not None:
            sink.port = port
        if auth:
            options["authenticator"] = sink.authenticate
        controller = Controller(sink, hostname=sink.host, port=sink.port, **options)
        controller.start()
        controllers.append(controller)
        return sink

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def relay_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RELAY_PASSWORD", PASSWORD)
    return PASSWORD


def send_email_config(sink: SmtpSink, properties: str = "", smtp: str = "") -> str:
    """A send-email registration for every job type, pointed at ``sink`` through [smtp]."""
    return f"""
        [smtp]
        host = "{sink.host}"
        port = {sink.port}
        mail_from = "jobhooks@example.com"
        {smtp}

        [[handlers]]
        name = "mail-pki"
        type = "send-email"
        job_types = "*"
        timeout = 30
        [handlers.properties]
        EmailRecipients = "pki-team@example.com, oncall@example.com;audit@example.com"
        {properties}
    """


def attempt(config: Path, **context: Any) -> Outcome:
    """Run the registration ``mail-pki`` once on a sample context, as a worker would."""
    registered = load(config).registry.get("mail-pki")
    assert registered is not None
    return asyncio.run(run_attempt(registered, sample_context(**context)))


def test_a_completion_is_mailed_to_every_recipient(
    cli: Any, write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    result = cli(
        "test-handler",
        "mail-pki",
        "-c",
        str(write_config(send_email_config(sink))),
        "--result",
        "warning",
        "--job-type-id",
        INVENTORY,
    )
    assert result.exit_code == 0, result.output
    (message,) = sink.messages
    recipients = ["pki-team@example.com", "oncall@example.com", "audit@example.com"]
    assert sink.envelopes == [("jobhooks@example.com", recipients)]
    assert message["From"] == "jobhooks@example.com"
    assert message["To"] == ", ".join(recipients)
    assert message["Subject"] == "Orchestrator Inventory job Warning on orchestrator01.example.com"
    body = message.get_content()
    assert f"Job type:        Inventory ({INVENTORY.lower()})" in body
    assert "Result:          Warning" in body
    assert "access denied to store /etc/ssl/certs" in body
    assert message["Message-ID"] and message["Date"]


@pytest.mark.parametrize("result", ["success", "failure"])
def test_every_result_is_mailed(
    write_config: WriteConfig, start_smtp: StartSmtp, result: str
) -> None:
    sink = start_smtp()
    outcome = attempt(write_config(send_email_config(sink)), job_result=result)
    assert outcome.succeeded, outcome.error
    assert len(sink.messages) == 1


def test_subject_and_body_templates_are_used(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    properties = '''
        subject = "[{{ job_result }}] {{ job_type }} on {{ client_machine }} (retry {{ current_retry_count }})"
        body = """
        {%- if failed %}FAILED{% else %}ok{% endif %}: job {{ job_id }}
        agent {{ agent_id }}, message: {{ message }}
        """
    '''  # noqa: E501
    config = write_config(send_email_config(sink, properties))
    job_id = uuid.uuid4()
    outcome = attempt(config, job_id=job_id, current_retry_count=3, message="disk full")
    assert outcome.succeeded, outcome.error
    (message,) = sink.messages
    assert message["Subject"] == "[Failure] Inventory on orchestrator01.example.com (retry 3)"
    assert message.get_content().strip().splitlines() == [
        f"FAILED: job {job_id}",
        "agent 3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21, message: disk full",
    ]


def test_smtp_section_supplies_what_the_handler_leaves_out(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    config = write_config(
        f"""
        [smtp]
        host = "{sink.host}"
        port = {sink.port}
        mail_from = "from-smtp-section@example.com"

        [[handlers]]
        name = "mail-pki"
        type = "send-email"
        job_types = "*"
        [handlers.properties]
        EmailRecipients = ["pki-team@example.com"]
        """
    )
    assert attempt(config).succeeded
    assert sink.envelopes == [("from-smtp-section@example.com", ["pki-team@example.com"])]


def test_the_handler_own_properties_override_the_smtp_section(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    config = write_config(
        f"""
        [smtp]
        host = "smtp.invalid"
        port = 2525
        mail_from = "from-smtp-section@example.com"

        [[handlers]]
        name = "mail-pki"
        type = "send-email"
        job_types = "*"
        [handlers.properties]
        SmtpServer = "{sink.host}"
        SmtpPort = "{sink.port}"
        MailFrom = "own@example.com"
        EmailRecipients = ["pki-team@example.com"]
        """
    )
    assert attempt(config).succeeded
    assert sink.envelopes == [("own@example.com", ["pki-team@example.com"])]


def test_without_a_server_anywhere_validate_names_the_property(
    cli: Any, write_config: WriteConfig
) -> None:
    config = write_config(
        """
        [[handlers]]
        name = "mail-pki"
        type = "send-email"
        job_types = "*"
        [handlers.properties]
        EmailRecipients = ["pki-team@example.com"]
        """
    )
    result = cli("validate", "-c", str(config))
    assert result.exit_code == 1
    assert "'mail-pki'" in result.stderr
    assert (
        "[smtp] host: is not set (handlers[0] 'mail-pki' takes its SmtpServer from here; "
        "or give SmtpServer in its properties)"
    ) in result.stderr


def test_a_password_is_not_sent_in_clear_to_a_server_without_starttls(
    write_config: WriteConfig, start_smtp: StartSmtp, relay_password: str
) -> None:
    sink = start_smtp(auth=True, auth_require_tls=False)  # would take AUTH in clear
    smtp = f'username = "{LOGIN}"\npassword = "env:RELAY_PASSWORD"'
    outcome = attempt(write_config(send_email_config(sink, smtp=smtp)))
    assert not outcome.succeeded
    assert outcome.error == (
        f"SmtpTlsError: SMTP server {sink.host}:{sink.port}: the connection is not encrypted, "
        "so the password was not sent (the server does not offer STARTTLS; use port 465 for "
        'implicit TLS, or set tls = "none" to send it in clear)'
    )
    assert sink.logins == [] and sink.messages == []


def _delivered_without_login(sink: RecordingSink, outcome: Outcome) -> None:
    """The attempt succeeded, in clear, and never logged in."""
    assert outcome.succeeded, outcome.error
    assert sink.logins == []
    assert sink.deliveries == [Delivery(encrypted=False, login=None)]


def test_an_empty_username_and_password_mean_no_login(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    # As the sample's web.config gives them for a relay that takes mail without a login.
    sink = start_smtp(auth=True, auth_require_tls=False)
    properties = 'Username = ""\nPassword = ""'
    _delivered_without_login(sink, attempt(write_config(send_email_config(sink, properties))))


def test_the_smtp_section_login_is_not_sent_to_a_server_the_handler_names(
    write_config: WriteConfig, start_smtp: StartSmtp, relay_password: str
) -> None:
    sink = start_smtp(auth=True, auth_require_tls=False)
    config = write_config(
        f"""
        [smtp]
        host = "smtp.invalid"
        username = "{LOGIN}"
        password = "env:RELAY_PASSWORD"
        mail_from = "jobhooks@example.com"

        [[handlers]]
        name = "mail-pki"
        type = "send-email"
        job_types = "*"
        [handlers.properties]
        SmtpServer = "{sink.host}"
        SmtpPort = "{sink.port}"
        EmailRecipients = ["pki-team@example.com"]
        """
    )
    _delivered_without_login(sink, attempt(config))


def test_tls_none_given_explicitly_sends_the_password_in_clear(
    write_config: WriteConfig, start_smtp: StartSmtp, relay_password: str
) -> None:
    sink = start_smtp(auth=True, auth_require_tls=False)
    smtp = f'tls = "none"\nusername = "{LOGIN}"\npassword = "env:RELAY_PASSWORD"'
    outcome = attempt(write_config(send_email_config(sink, smtp=smtp)))
    assert outcome.succeeded, outcome.error
    assert sink.logins == [(LOGIN, relay_password)]
    assert sink.deliveries == [Delivery(encrypted=False, login=LOGIN)]


def test_tls_none_never_upgrades_even_when_offered(
    write_config: WriteConfig, start_smtp: StartSmtp, test_certificates: TestCertificates
) -> None:
    sink = start_smtp(tls_context=test_certificates.server_context())
    outcome = attempt(write_config(send_email_config(sink, smtp='tls = "none"')))
    assert outcome.succeeded, outcome.error
    assert sink.deliveries == [Delivery(encrypted=False, login=None)]


def test_without_a_password_auto_delivers_in_clear_where_starttls_is_not_offered(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    outcome = attempt(write_config(send_email_config(sink)))
    assert outcome.succeeded, outcome.error
    assert sink.deliveries == [Delivery(encrypted=False, login=None)]


def test_auto_upgrades_with_starttls_when_the_server_offers_it(
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
    relay_password: str,
) -> None:
    # The server offers STARTTLS but does not insist, and would take AUTH in clear: the
    # default (no tls anywhere) upgrades first, as MailKit's Connect(host, port) does.
    sink = start_smtp(
        auth=True, tls_context=test_certificates.server_context(), auth_require_tls=False
    )
    smtp = (
        f'ca_bundle = "{test_certificates.ca}"\n'
        f'username = "{LOGIN}"\npassword = "env:RELAY_PASSWORD"'
    )
    outcome = attempt(write_config(send_email_config(sink, smtp=smtp)))
    assert outcome.succeeded, outcome.error
    assert sink.logins == [(LOGIN, relay_password)]
    assert sink.deliveries == [Delivery(encrypted=True, login=LOGIN)]


def test_tls_starttls_fails_where_the_server_does_not_offer_it(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    outcome = attempt(write_config(send_email_config(sink, 'Tls = "starttls"')))
    assert not outcome.succeeded
    assert outcome.error == (
        f'SmtpTlsError: SMTP server {sink.host}:{sink.port}: tls = "starttls" but the '
        "server does not offer STARTTLS"
    )
    assert sink.messages == []


def test_auto_on_port_465_is_implicit_tls(
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
    relay_password: str,
) -> None:
    try:
        sink = start_smtp(
            port=465,
            auth=True,
            ssl_context=test_certificates.server_context(),
            auth_require_tls=False,
        )
    except PermissionError:
        pytest.skip("binding port 465 needs root (or a lower ip_unprivileged_port_start)")
    smtp = (
        f'ca_bundle = "{test_certificates.ca}"\n'
        f'username = "{LOGIN}"\npassword = "env:RELAY_PASSWORD"'
    )
    outcome = attempt(write_config(send_email_config(sink, smtp=smtp)))
    assert outcome.succeeded, outcome.error
    assert sink.deliveries == [Delivery(encrypted=True, login=LOGIN)]


def test_a_wrong_password_is_a_failed_attempt_that_says_so(
    cli: Any,
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_PASSWORD", "not-the-password-3Zx")
    sink = start_smtp(auth=True, tls_context=test_certificates.server_context())
    properties = (
        f'Username = "{LOGIN}"\nPassword = "env:RELAY_PASSWORD"\n'
        f'CaBundle = "{test_certificates.ca}"'
    )
    config = write_config(send_email_config(sink, properties))
    outcome = attempt(config)
    assert not outcome.succeeded
    # Tried again, a wrong password may lock the relay's account: not retried.
    assert outcome.final
    assert outcome.error == (
        f"SmtpRejectedError: SMTP server {sink.host}:{sink.port} refused the mail: 535 5.7.8 "
        "Authentication credentials invalid (a permanent failure: not retried)"
    )
    assert sink.messages == []
    result = cli("test-handler", "mail-pki", "-c", str(config))
    assert result.exit_code == 1
    assert "535 5.7.8 Authentication credentials invalid (a permanent failure: not retried)" in (
        result.stdout
    )
    assert "not-the-password-3Zx" not in result.output


def test_starttls_with_a_private_ca_then_auth(
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
    relay_password: str,
) -> None:
    sink = start_smtp(
        auth=True,
        tls_context=test_certificates.server_context(),
        require_starttls=True,
        auth_require_tls=True,
    )
    properties = (
        f'Username = "{LOGIN}"\nPassword = "env:RELAY_PASSWORD"\n'
        f'Tls = "starttls"\nCaBundle = "{test_certificates.ca}"'
    )
    outcome = attempt(write_config(send_email_config(sink, properties)))
    assert outcome.succeeded, outcome.error
    assert sink.deliveries == [Delivery(encrypted=True, login=LOGIN)]
    assert len(sink.messages) == 1


@pytest.mark.parametrize("tls", ["", "Starttls = true", 'Tls = "starttls"'])
def test_starttls_refuses_a_certificate_it_cannot_verify(
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
    tls: str,
) -> None:
    sink = start_smtp(tls_context=test_certificates.server_context(), require_starttls=True)
    outcome = attempt(write_config(send_email_config(sink, tls)))
    assert not outcome.succeeded
    assert "CERTIFICATE_VERIFY_FAILED" in (outcome.error or "")
    assert sink.messages == []


def test_implicit_tls_with_the_ca_bundle_from_the_smtp_section(
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
    relay_password: str,
) -> None:
    # aiosmtpd's auth_require_tls knows STARTTLS only; this connection is TLS from the start.
    sink = start_smtp(
        auth=True, ssl_context=test_certificates.server_context(), auth_require_tls=False
    )
    smtp = (
        f'tls = true\nca_bundle = "{test_certificates.ca}"\n'
        f'username = "{LOGIN}"\npassword = "env:RELAY_PASSWORD"'
    )
    outcome = attempt(write_config(send_email_config(sink, smtp=smtp)))
    assert outcome.succeeded, outcome.error
    assert sink.deliveries == [Delivery(encrypted=True, login=LOGIN)]


def test_a_missing_ca_bundle_is_a_registration_error(
    cli: Any, write_config: WriteConfig, start_smtp: StartSmtp, tmp_path: Path
) -> None:
    sink = start_smtp()
    missing = tmp_path / "nowhere" / "ca.pem"
    result = cli(
        "validate", "-c", str(write_config(send_email_config(sink, f'CaBundle = "{missing}"')))
    )
    assert result.exit_code == 1
    assert f"'mail-pki': property CaBundle: no such file: {missing}" in result.stderr


def test_starttls_and_tls_together_are_a_registration_error(
    cli: Any, write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    result = cli(
        "validate", "-c", str(write_config(send_email_config(sink, "starttls = true\ntls = true")))
    )
    assert result.exit_code == 1
    assert "'mail-pki': starttls and tls exclude each other" in result.stderr


def test_the_smtp_section_tls_mode_gives_way_to_the_handler_older_starttls(
    write_config: WriteConfig,
    start_smtp: StartSmtp,
    test_certificates: TestCertificates,
) -> None:
    sink = start_smtp(tls_context=test_certificates.server_context())
    config = send_email_config(
        sink, f'Starttls = true\nCaBundle = "{test_certificates.ca}"', smtp='tls = "none"'
    )
    outcome = attempt(write_config(config))
    assert outcome.succeeded, outcome.error
    assert sink.deliveries == [Delivery(encrypted=True, login=None)]


def test_the_handler_takes_the_tls_modes_of_the_smtp_section() -> None:
    assert get_args(mail.SmtpTls) == get_args(schema.SmtpTls)


def test_an_unknown_tls_mode_is_named_with_its_line(cli: Any, write_config: WriteConfig) -> None:
    config = write_config('[smtp]\nhost = "smtp.example.com"\ntls = "startls"\n')
    result = cli("validate", "-c", str(config))
    assert result.exit_code == 1
    assert "[smtp] tls: expected 'auto', 'starttls', 'implicit' or 'none'" in result.stderr
    assert "'startls'" in result.stderr and "line 3" in result.stderr


INJECTIONS = {
    "job_type": "Inventory\r\nBcc: evil-bcc@attacker.example",
    "client_machine": "orch01\nTo: evil-to@attacker.example\r\nX-Injected: yes",
    "message": (
        "denied\r\nCc: evil-cc@attacker.example\r\n.\r\nMAIL FROM:<evil@attacker.example>\r\n"
        "RCPT TO:<evil-smuggled@attacker.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n"
    ),
}


@pytest.mark.parametrize("subject", [None, "{{ message }} / {{ client_machine }}"])
def test_crlf_in_orchestrator_values_stays_harmless_text(
    write_config: WriteConfig, start_smtp: StartSmtp, subject: str | None
) -> None:
    sink = start_smtp()
    properties = f"subject = {json.dumps(subject)}" if subject else ""
    outcome = attempt(write_config(send_email_config(sink, properties)), **INJECTIONS)
    assert outcome.succeeded, outcome.error
    (message,) = sink.messages
    assert sink.envelopes == [
        (
            "jobhooks@example.com",
            ["pki-team@example.com", "oncall@example.com", "audit@example.com"],
        )
    ]
    assert sorted(message.keys()) == [
        "Content-Transfer-Encoding",
        "Content-Type",
        "Date",
        "From",
        "MIME-Version",
        "Message-ID",
        "Subject",
        "To",
    ]
    assert message["To"] == "pki-team@example.com, oncall@example.com, audit@example.com"
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert "attacker.example" in message["Subject"], "kept, as text"
    body = message.get_content()
    assert "MAIL FROM:<evil@attacker.example>" in body, "the smuggling attempt is body text"
    assert "evil-smuggled@attacker.example" not in {r for _, rs in sink.envelopes for r in rs}


def test_non_ascii_values_reach_the_subject_intact(
    write_config: WriteConfig, start_smtp: StartSmtp
) -> None:
    sink = start_smtp()
    config = write_config(send_email_config(sink))
    assert attempt(config, job_type="Ünïcode Inventory — 東京", client_machine="h").succeeded
    assert sink.messages[0]["Subject"] == "Orchestrator Ünïcode Inventory — 東京 job Failure on h"


def test_no_connection_is_left_open_when_the_event_loop_ends_after_a_tls_send(
    write_config: WriteConfig, start_smtp: StartSmtp, test_certificates: TestCertificates
) -> None:
    # test-handler and a process-isolated attempt end their event loop right after the
    # send: a socket still waiting for the relay's TLS close_notify would be left open
    # (whether the relay's close_notify arrived first is a race: hence several sends).
    sink = start_smtp(tls_context=test_certificates.server_context())
    config = write_config(send_email_config(sink, f'CaBundle = "{test_certificates.ca}"'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(30):
            assert attempt(config).succeeded
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert len(sink.deliveries) == 30 and all(d.encrypted for d in sink.deliveries)
