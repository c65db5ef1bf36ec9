"""Fixtures shared across the suite: configuration files, handler types, the CLI, SMTP."""

from __future__ import annotations

import datetime
import email
import http.server
import ipaddress
import socket
import ssl
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from click.testing import Result
from support.loopback import LoopbackServer
from typer.testing import CliRunner

SMTP_PASSWORD = "pw-Zq8rT3-never-print-me"
"""What ``env:SMTP_PASSWORD`` resolves to; no output may ever contain it."""

SEED_JOB_TYPES = ("7B6BBC1B-D802-4B09-BEC9-F5C221083130", "44340A94-9B99-410D-8011-598FB176C3C5")

SEED_TOML = """\
[[handlers]]
name = "SendEmail_RepeatedFailureHandler"
type = "repeated-failure-email"
job_types = ["7B6BBC1B-D802-4B09-BEC9-F5C221083130", "44340A94-9B99-410D-8011-598FB176C3C5"]
[handlers.properties]
SmtpServer = "smtp.example.com"
SmtpPort = 587
Username = "jobhooks@example.com"
Password = "env:SMTP_PASSWORD"
MailFrom = "jobhooks@example.com"
EmailRecipients = "pki-team@example.com,oncall@example.com"
RetryThreshold = 2
"""
"""The seed's SendEmail_RepeatedFailureHandler registration, as DESIGN.md writes it."""

HANDLER_MODULE = "jobhooks_test_handlers"

_HANDLER_SOURCE = '''
"""Handler types for the tests, registered as ``jobhooks_test_handlers:Class``."""

import json
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler, Secret


class Recorder(JobCompleteHandler):
    """Writes the context it got to ``path`` as JSON."""

    path: str
    label: str = "recorded"

    def run_handler(self, context: JobCompleteContext) -> bool:
        data = {"label": self.label, **context.to_dict()}
        Path(self.path).write_text(json.dumps(data), encoding="utf-8")
        return True


class AsyncRecorder(Recorder):
    """Recorder, run on the event loop."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        return super().run_handler(context)


class Raises(JobCompleteHandler):
    """Fails by raising."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise RuntimeError("mailbox unavailable: quota exceeded")


class ReturnsFalse(JobCompleteHandler):
    """Fails by returning False."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        return False


class Typed(JobCompleteHandler):
    """One property of each supported kind."""

    smtp_port: int
    email_recipients: list[str]
    use_tls: bool = False
    ratio: float = 1.5
    api_key: Secret | None = None
    note: str = "default note"

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class Picky(JobCompleteHandler):
    """Rejects its registration in setup()."""

    level: int = 0

    def setup(self) -> None:
        if self.level > 3:
            raise ValueError("property Level: at most 3")

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True
'''


@pytest.fixture(scope="session")
def _handler_module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("handler_types")
    (directory / f"{HANDLER_MODULE}.py").write_text(_HANDLER_SOURCE, encoding="utf-8")
    return directory


@pytest.fixture
def handler_types(_handler_module_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``jobhooks_test_handlers`` importable; returns its name for ``type = "...:Class"``."""
    monkeypatch.syspath_prepend(str(_handler_module_dir))
    return HANDLER_MODULE


@pytest.fixture
def seed_toml() -> str:
    """The seed's SendEmail_RepeatedFailureHandler registration, as DESIGN.md writes it."""
    return SEED_TOML


@pytest.fixture
def smtp_password(monkeypatch: pytest.MonkeyPatch) -> str:
    """Set SMTP_PASSWORD as the seed registration references it."""
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    return SMTP_PASSWORD


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a jobhooks.toml (dedented) into the test's directory and return its path."""

    def write(text: str, name: str = "jobhooks.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


class Cli:
    """Runs ``jobhooks`` in-process, on a console wide enough not to fold table cells."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        from jobhooks.cli import app

        return self.runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``cli("validate", "-c", path)`` -> click Result (``exit_code``, ``stdout``, ``stderr``)."""
    import jobhooks.cli.config_commands  # noqa: F401  (registers the verbs)
    from jobhooks.cli.app import console, err_console

    monkeypatch.setattr(console, "width", 400)
    monkeypatch.setattr(err_console, "width", 400)
    return Cli()


class SmtpSink:
    """A real SMTP server on loopback that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.host = "127.0.0.1"
        self.port = _free_port(self.host)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """An aiosmtpd server on 127.0.0.1 at a free port; ``messages`` are parsed EmailMessages."""
    sink = SmtpSink()
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


class TestCertificates:
    """A private CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobhooks test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server-key.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the server certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def test_certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    """A private CA (``ca``) and a server certificate for 127.0.0.1 (``cert``, ``key``)."""
    return TestCertificates(tmp_path_factory.mktemp("tls"))


@dataclass(frozen=True)
class Received:
    """One HTTP request as a loopback receiver got it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes


Reply = tuple[int, bytes] | tuple[int, bytes, dict[str, str]]


class HttpReceiver:
    """A real HTTP(S) server on 127.0.0.1 that records every request and answers as told.

    ``respond`` maps a request to ``(status, body)`` or ``(status, body,
    headers)``; the default answers 200 with an empty body. ``release``
    unblocks responders that wait on it (for timeouts). With ``keep_alive``
    it speaks HTTP/1.1 and keeps connections open, as most servers do.
    """

    def __init__(self, tls: ssl.SSLContext | None = None, *, keep_alive: bool = False) -> None:
        self.requests: list[Received] = []
        self.respond: Callable[[Received], Reply] = lambda request: (200, b"")
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            timeout = 5  # a kept-alive connection nobody closes ends here, not at join

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                parts = urlsplit(self.path)
                request = Received(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                receiver.requests.append(request)
                status, body, *extra = receiver.respond(request)
                self.send_response(status)
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = LoopbackServer(Handler, tls=tls)
        self.port: int = self._serving.port
        self.url = self._serving.origin

    def close(self) -> None:
        """Release waiting responders, stop serving and close every socket."""
        self.release.set()
        self._serving.close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """An HTTP server on 127.0.0.1 at a free port; see :class:`HttpReceiver`."""
    receiver = HttpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
