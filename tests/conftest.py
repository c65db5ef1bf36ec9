"""Fixtures shared across the suite: configuration files, handler types, the CLI, SMTP."""

from __future__ import annotations

import email
import socket
import textwrap
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import Result
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
