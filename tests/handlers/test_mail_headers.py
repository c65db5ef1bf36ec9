"""Header lines of the email handlers' messages, read from the raw bytes an SMTP server got.

Values from check-ins only ever become header text: not with CR or LF in
them, and not through RFC 2047 encoded words either, which a vulnerable
``email`` package (CPython 3.11.7, 3.12.1: CVE-2024-6923) decoded and wrote
back out as new header lines. A mail reader shows such values literally.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import SmtpSink

from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.registry.build import load
from jobhooks.testing import sample_context

WriteConfig = Callable[..., Path]

RECIPIENTS = ["pki-team@example.com", "oncall@example.com"]
MACHINE = "orchestrator01.example.com"
HEADER_NAMES = [
    "Content-Transfer-Encoding",
    "Content-Type",
    "Date",
    "From",
    "MIME-Version",
    "Message-ID",
    "Subject",
    "To",
]


def b64(text: str) -> str:
    """``text`` as UTF-8, base64-encoded."""
    return base64.b64encode(text.encode()).decode()


ENCODED_WORDS = {
    "q": "=?utf-8?q?Inv=0D=0ABcc:_victim7@evil.example?=",
    "b": f"=?utf-8?b?{b64('X' + chr(13) + chr(10) + 'Bcc: victim@evil.example')}?=",
    "upper-q": "=?UTF-8?Q?Inv=0D=0ABcc:_victim7@evil.example?=",
    "upper-b": f"=?UTF-8?B?{b64('X' + chr(13) + chr(10) + 'Bcc: victim@evil.example')}?=",
    "split": "=?utf-8?q?Inv=0D=0A?= =?utf-8?q?Bcc:_victim7@evil.example?=",
    "latin1-lf": "=?iso-8859-1?q?Inv=0ABcc:_victim7@evil.example?=",
}
"""Check-in values that are encoded words carrying a line break and a Bcc header."""


class RawSink(SmtpSink):
    """SmtpSink that also keeps the bytes of every DATA exactly as they arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.original_content)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sink() -> Iterator[RawSink]:
    """A RawSink served by aiosmtpd on 127.0.0.1."""
    sink = RawSink()
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def mail_config(
    sink: SmtpSink,
    properties: str = "",
    *,
    handler: str = "send-email",
    mail_from: str = "jobhooks@example.com",
    recipients: str = ", ".join(RECIPIENTS),
) -> str:
    """A registration ``mail`` of ``handler`` for every job type, sending through ``sink``."""
    return f"""
        [smtp]
        host = "{sink.host}"
        port = {sink.port}
        mail_from = {json.dumps(mail_from)}

        [[handlers]]
        name = "mail"
        type = "{handler}"
        job_types = "*"
        [handlers.properties]
        EmailRecipients = {json.dumps(recipients)}
        {properties}
    """


def attempt(config: Path, **context: Any) -> Outcome:
    """Run the registration ``mail`` once on a sample context, as a worker would."""
    registered = load(config).registry.get("mail")
    assert registered is not None
    return asyncio.run(run_attempt(registered, sample_context(**context)))


def header_lines(raw: bytes) -> list[str]:
    """The physical header lines: up to the first blank line, any of CR, LF or CRLF ending one."""
    lines = []
    for line in re.split(rb"\r\n|\r|\n", raw):
        if not line:
            break
        lines.append(line.decode("ascii"))
    return lines


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of every header field, as a mail reader splits them."""
    fields: list[tuple[str, str]] = []
    for line in header_lines(raw):
        if line[0] in " \t":
            assert fields, f"a continuation line opens the header: {line!r}"
            name, value = fields.pop()
            fields.append((name, value + line))
        else:
            name, colon, value = line.partition(":")
            assert colon and re.fullmatch(r"[!-9;-~]+", name), f"not a header field: {line!r}"
            fields.append((name, value))
    return fields


def displayed(value: str) -> str:
    """A header value as a mail reader displays it, encoded words decoded."""
    return str(make_header(decode_header(value.strip())))


def delivered(sink: RawSink) -> dict[str, str]:
    """The one message's header fields by name, checked to be exactly the expected ones."""
    (raw,) = sink.raw
    fields = header_fields(raw)
    names = [name for name, _ in fields]
    assert "bcc" not in [name.lower() for name in names], header_lines(raw)
    assert sorted(names, key=str.lower) == sorted(HEADER_NAMES, key=str.lower), names
    assert sink.envelopes == [("jobhooks@example.com", RECIPIENTS)]
    return dict(fields)


@pytest.mark.parametrize("payload", ENCODED_WORDS.values(), ids=ENCODED_WORDS.keys())
@pytest.mark.parametrize(
    ("context", "subject_template", "expected"),
    [
        pytest.param(
            {"job_type": "{}"}, None, "Orchestrator {} job Failure on " + MACHINE, id="job_type"
        ),
        pytest.param(
            {"client_machine": "{}"},
            None,
            "Orchestrator Inventory job Failure on {}",
            id="client_machine",
        ),
        pytest.param(
            {"message": "{}", "username": "{}"},
            "{{ message }} ({{ username }})",
            "{} ({})",
            id="template",
        ),
    ],
)
def test_an_encoded_word_from_a_check_in_is_subject_text_only(
    write_config: WriteConfig,
    sink: RawSink,
    payload: str,
    context: dict[str, str],
    subject_template: str | None,
    expected: str,
) -> None:
    properties = f"subject = {json.dumps(subject_template)}" if subject_template else ""
    values = {key: value.format(payload) for key, value in context.items()}
    outcome = attempt(write_config(mail_config(sink, properties)), **values)
    assert outcome.succeeded, outcome.error
    headers = delivered(sink)
    assert displayed(headers["Subject"]) == expected.replace("{}", payload)
    assert displayed(headers["To"]) == ", ".join(RECIPIENTS)
    assert displayed(headers["From"]) == "jobhooks@example.com"


@pytest.mark.parametrize("payload", ENCODED_WORDS.values(), ids=ENCODED_WORDS.keys())
def test_repeated_failure_email_subject_keeps_an_encoded_word_as_text(
    write_config: WriteConfig, sink: RawSink, payload: str
) -> None:
    config = write_config(mail_config(sink, handler="repeated-failure-email"))
    outcome = attempt(config, job_type=payload, current_retry_count=2)
    assert outcome.succeeded, outcome.error
    assert displayed(delivered(sink)["Subject"]) == f"Orchestrator {payload} Job Failed"


def test_a_plain_ascii_subject_stays_plain_text(write_config: WriteConfig, sink: RawSink) -> None:
    config = write_config(mail_config(sink, handler="repeated-failure-email"))
    assert attempt(config, job_type="WinCertInventory", current_retry_count=2).succeeded
    assert "Subject: Orchestrator WinCertInventory Job Failed" in header_lines(sink.raw[0])


def test_a_non_ascii_subject_reads_back_intact(write_config: WriteConfig, sink: RawSink) -> None:
    config = write_config(mail_config(sink, handler="repeated-failure-email"))
    assert attempt(config, job_type="Inventaire échoué", current_retry_count=2).succeeded
    assert displayed(delivered(sink)["Subject"]) == "Orchestrator Inventaire échoué Job Failed"


def field_lines(raw: bytes, name: str) -> list[str]:
    """The physical lines of the header field ``name``: its first line and continuations."""
    lines: list[str] = []
    current = ""
    for line in header_lines(raw):
        if line[0] not in " \t":
            current = line.partition(":")[0]
        if current == name:
            lines.append(line)
    return lines


@pytest.mark.parametrize(
    ("word", "count"),
    [
        pytest.param("Inventaire-échoué-東京-🙂", 20, id="non-ascii"),
        pytest.param("Inventory-of-the-store", 7, id="ascii"),
        pytest.param("=?utf-8?q?x?=", 20, id="encoded-word"),
    ],
)
def test_a_long_subject_is_folded_into_short_lines_and_cut_at_200(
    write_config: WriteConfig, sink: RawSink, word: str, count: int
) -> None:
    job_type = " ".join([word] * count)
    config = write_config(mail_config(sink, handler="repeated-failure-email"))
    assert attempt(config, job_type=job_type, current_retry_count=2).succeeded
    subject = f"Orchestrator {job_type} Job Failed"
    expected = subject if len(subject) <= 200 else subject[:199] + "…"
    assert displayed(delivered(sink)["Subject"]) == expected
    lines = field_lines(sink.raw[0], "Subject")
    assert len(lines) > 2, lines
    assert all(len(line) <= (76 if "=?" in line else 78) for line in lines), lines


def test_mail_from_display_name_is_text_only(write_config: WriteConfig, sink: RawSink) -> None:
    name = ENCODED_WORDS["q"]
    config = write_config(mail_config(sink, mail_from=f'"{name}" <jobhooks@example.com>'))
    outcome = attempt(config)
    assert outcome.succeeded, outcome.error
    assert displayed(delivered(sink)["From"]) == f"{name} <jobhooks@example.com>"


def test_a_non_ascii_display_name_reads_back_intact(
    write_config: WriteConfig, sink: RawSink
) -> None:
    config = write_config(mail_config(sink, mail_from="Jöbhooks PKI <jobhooks@example.com>"))
    assert attempt(config).succeeded
    assert displayed(delivered(sink)["From"]) == "Jöbhooks PKI <jobhooks@example.com>"


@pytest.mark.parametrize(
    "recipient",
    ["pki@example.com Bcc: victim@evil.example", "<pki@example.com> victim@evil.example"],
)
def test_a_recipient_that_is_not_one_address_is_a_registration_error(
    cli: Any, write_config: WriteConfig, sink: RawSink, recipient: str
) -> None:
    config = write_config(mail_config(sink, recipients=recipient))
    result = cli("validate", "-c", str(config))
    assert result.exit_code == 1
    assert "'mail': property EmailRecipients: not an email address" in result.stderr
