"""What the email handlers share: SMTP properties, message building and sending.

Header fields that carry outside text (Subject from job data, From and To from
the configuration) are composed and folded here, never parsed by the ``email``
package: its parser decodes RFC 2047 encoded words, and some versions wrote a
decoded CR/LF back out as a new header line (CVE-2024-6923). Here text stays
text: printable ASCII without ``=?`` goes out as is, anything else as base64
encoded words of exactly that text, which a mail reader shows literally.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import unicodedata
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiosmtplib

from jobhooks import JobCompleteContext, JobCompleteHandler, PermanentFailure, Secret
from jobhooks.handlers._digest import digest_lines
from jobhooks.handlers._templates import compile_template, render

__all__ = [
    "EmailHandler",
    "SmtpRecipientsError",
    "SmtpRejectedError",
    "SmtpTlsError",
    "header_text",
    "raise_all",
]

SmtpTls = Literal["auto", "starttls", "implicit", "none"]
"""As ``[smtp] tls``: see :meth:`EmailHandler.send`."""
_IMPLICIT_PORT = 465
REMEMBERED_RUNS = 1000
"""Runs whose recipients that took the mail a handler remembers at most, forgetting the
oldest first (a run is forgotten once every recipient took it)."""

_LINE = 76
"""Header lines are folded to this length: RFC 2047's limit for lines with encoded words."""
_PLAIN = re.compile(r"[ -~]*")
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_ADDR_SPEC = r'[^\s<>(),;:"\\]+'
_MAILBOX = re.compile(
    rf'(?P<bare>{_ADDR_SPEC})|(?P<name>"(?:[^"\\]|\\.)*"|[^<>"]*?)\s*<(?P<addr>{_ADDR_SPEC})>'
)


def header_text(value: str, limit: int = 200) -> str:
    """Make a value safe for a header: no CR, LF or other control characters.

    Controls (C0, DEL, C1) become spaces, runs of whitespace one space, and
    text longer than ``limit`` is cut, ending in "…".
    """
    cleaned = "".join(_header_char(ch) for ch in value)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _header_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cc":  # C0, DEL and C1 controls
        return " "
    if category == "Cs":  # a lone surrogate, from a JSON escape: not encodable
        return "\ufffd"
    return ch


def _plain(text: str) -> bool:
    """Whether text can go into a header as is: printable ASCII a reader will not decode."""
    return _PLAIN.fullmatch(text) is not None and "=?" not in text


def _encoded_words(text: str, longest: int) -> list[str]:
    """Text as UTF-8 base64 encoded words of at most ``longest`` characters each.

    Whole characters per word (RFC 2047 section 5); a reader joins adjacent
    encoded words without the space between them, so this is exactly ``text``.
    """
    most = (longest - len("=?utf-8?b??=")) // 4 * 3
    chunks: list[bytes] = []
    chunk = b""
    for ch in text:
        data = ch.encode("utf-8", "replace")
        if chunk and len(chunk) + len(data) > most:
            chunks.append(chunk)
            chunk = b""
        chunk += data
    if chunk:
        chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=" for chunk in chunks]


class _Header(str):
    """A header field composed here: its text as ``str``, its wire form from ``fold``.

    To the ``email`` policies a value with a matching ``name`` is a header
    object: they store it unparsed and write it by calling ``fold`` (see
    EmailPolicy.header_store_parse and fold), so no version of the email
    package ever parses, decodes or refolds it.
    """

    name: str
    tokens: tuple[str, ...]

    def __new__(cls, name: str, text: str, tokens: Sequence[str]) -> _Header:
        if any(not token or _BREAKS.search(token) for token in tokens):
            raise ValueError(f"{name}: empty or line-breaking header text: {tokens!r}")
        header = super().__new__(cls, text)
        header.name = name
        header.tokens = tuple(tokens)
        return header

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, str(self), self.tokens))

    def fold(self, *, policy: Policy) -> str:
        """``Name: tokens`` in lines of at most 76 characters, folded between tokens."""
        lines = [f"{self.name}:"]
        for token in self.tokens:
            if len(lines[-1]) + 1 + len(token) > _LINE and lines[-1] != f"{self.name}:":
                lines.append("")
            lines[-1] += " " + token
        return policy.linesep.join(lines) + policy.linesep


def _subject(text: str) -> _Header:
    """The Subject field for text already cleaned by header_text."""
    tokens = text.split() if _plain(text) else _encoded_words(text, _LINE - len("Subject: "))
    return _Header("Subject", text, tokens)


def _mailbox(value: str, what: str) -> tuple[str, str]:
    """(display name, address) of one configured address; ValueError if it is not one.

    Accepts ``address``, ``Name <address>`` and ``"Name" <address>``; an
    address has no spaces, quotes, angle brackets, parentheses, commas,
    semicolons, colons or ``=?``.
    """
    match = _MAILBOX.fullmatch(value.strip())
    if match is None or _BREAKS.search(value) or "=?" in (match["bare"] or match["addr"]):
        raise ValueError(f"property {what}: not an email address: {value!r}")
    if match["bare"]:
        return "", match["bare"]
    name = match["name"]
    if name.startswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return header_text(name, limit=998), match["addr"]


def _addresses(name: str, mailboxes: Sequence[tuple[str, str]]) -> _Header:
    """An address field (From, To) listing mailboxes from _mailbox()."""
    tokens: list[str] = []
    shown: list[str] = []
    for display, address in mailboxes:
        if tokens:
            tokens[-1] += ","
        if not display:
            tokens.append(address)
            shown.append(address)
            continue
        atoms = _ATEXT_PHRASE.fullmatch(display) is not None
        if not _plain(display):
            tokens += _encoded_words(display, _LINE - len(f"{name}: "))
        elif atoms:
            tokens += display.split(" ")
        else:
            tokens.append(_quoted(display))
        tokens.append(f"<{address}>")
        shown.append(f"{display if atoms else _quoted(display)} <{address}>")
    return _Header(name, ", ".join(shown), tokens)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unverified(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``error``, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _permanent(code: int) -> bool:
    """Whether an SMTP answer refuses for good (5xx), not for now (4xx)."""
    return 500 <= code < 600


def raise_all(problems: Sequence[Exception]) -> None:
    """Raise the one problem, or an ``ExceptionGroup`` of several (a registration lists
    each); nothing when there is none."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ExceptionGroup(f"{len(problems)} problems", problems)


class SmtpTlsError(RuntimeError):
    """Raised when a connection is not encrypted as the TLS mode requires: the server
    does not offer STARTTLS where it is required, a password would go in clear, or the
    server's certificate cannot be verified."""


class SmtpRecipientsError(RuntimeError):
    """Raised when the server refused some recipients for now (a 4xx answer to one of
    them at least; those it took got the mail): retried, mailing only those refused."""


class SmtpRejectedError(PermanentFailure):
    """Raised when the server refused the mail for good (RFC 5321's 5xx answers): to
    the sender, the login, the message, or to every recipient it refused. Sending it
    again cannot help (and a wrong password tried again may lock the account), so the
    run is not retried."""


class EmailHandler(JobCompleteHandler):
    """Base of the email handlers: the seed's SMTP properties, defaulting to ``[smtp]``."""

    smtp_defaults: ClassVar[bool] = True

    email_recipients: list[str]
    smtp_server: str | None = None
    smtp_port: int = 25
    username: str | None = None
    password: Secret | None = None
    mail_from: str | None = None
    tls: SmtpTls | bool | None = None
    """``auto`` when unset; ``true`` and ``false``, from older files, read as
    ``implicit`` and unset."""
    starttls: bool | None = None
    """The older spelling: ``true`` reads as ``tls = "starttls"``."""
    ca_bundle: str | None = None
    """PEM file of the CA(s) to trust for the server's certificate, besides the system's."""
    smtp_timeout: float = 30.0
    subject: str | None = None
    body: str | None = None

    def setup(self) -> None:
        """Check the properties together: every problem found is raised at once (an
        ``ExceptionGroup`` of ``ValueError`` when there are several)."""
        problems: list[Exception] = []

        def check(step: Callable[[], None]) -> None:
            try:
                step()
            except ValueError as exc:
                problems.append(exc)

        check(self._compile_templates)
        if not self.smtp_server:
            problems.append(
                ValueError("property SmtpServer: not set here and [smtp] host is empty")
            )
        if not self.mail_from:
            problems.append(
                ValueError("property MailFrom: not set here and [smtp] mail_from is empty")
            )
        else:
            check(self._read_sender)
        if not self.email_recipients:
            problems.append(ValueError("property EmailRecipients: list at least one address"))
        check(self._check_recipients)
        check(self._read_tls)
        # An empty Username or Password is not set, as in the sample's web.config for a
        # relay that takes mail without a login.
        if self.password is not None and self.password.reveal() and not self.username:
            problems.append(ValueError("property Password is set but Username is not"))
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            problems.append(ValueError(f"property CaBundle: no such file: {self.ca_bundle}"))
        raise_all(problems)

    def _compile_templates(self) -> None:
        self._subject = compile_template(self.subject, "subject") if self.subject else None
        self._body = compile_template(self.body, "body") if self.body else None

    def _check_recipients(self) -> None:
        self._to = [_mailbox(address, "EmailRecipients") for address in self.email_recipients]

    def _read_sender(self) -> None:
        self._from = _mailbox(self.mail_from or "", "MailFrom")

    def _read_tls(self) -> None:
        self._tls: SmtpTls = self._tls_mode()

    def _tls_mode(self) -> SmtpTls:
        tls = ("implicit" if self.tls else None) if isinstance(self.tls, bool) else self.tls
        if self.starttls and tls is not None:
            raise ValueError(
                f'starttls and tls exclude each other: keep Tls = "{tls}" only '
                '(Starttls = true is the older spelling of Tls = "starttls")'
            )
        if self.starttls:
            return "starttls"
        return tls or "auto"

    def compose(self, context: JobCompleteContext, subject: str, body: str) -> EmailMessage:
        """The message for a context: the templates when configured, else the defaults."""
        if self._subject is not None:
            subject = render(self._subject, context, "subject")
        if self._body is not None:
            body = render(self._body, context, "body")
        return self.build_message(subject, body)

    async def deliver(self, context: JobCompleteContext, subject: str, body: str) -> None:
        """Compose the mail for ``context`` and send it (see :meth:`send`): a retry of the
        same run mails only the recipients that did not take it."""
        await self.send(self.compose(context, subject, body), run=context.completion_id)

    def build_message(self, subject: str, body: str) -> EmailMessage:
        """A plain-text message from MailFrom to EmailRecipients, with a Message-ID of its
        own (a replayed run's mail is a new message, never dropped as a duplicate).

        The subject is cleaned by header_text and written as text only: a
        reader shows what it says, even when that looks like an encoded word.
        """
        message = EmailMessage()
        message["From"] = _addresses("From", [self._from])
        message["To"] = _addresses("To", self._to)
        message["Subject"] = _subject(header_text(subject))
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain="jobhooks")
        message.set_content(body)
        return message

    async def send(self, message: EmailMessage, run: str = "") -> None:
        """Send through the configured SMTP server; raises on any delivery error.

        TLS as Keyfactor Command's MailKit ``Connect(host, port)`` chooses it when
        ``tls`` is ``auto``: implicit TLS on port 465, otherwise STARTTLS
        whenever the server offers it. ``starttls`` and ``implicit`` require
        it. A password goes over an unencrypted connection only with ``tls =
        "none``; otherwise the attempt fails with :class:`SmtpTlsError` before
        the login, as it does when the server's certificate cannot be verified.
        The envelope is MailFrom to EmailRecipients, never read back from the
        message's headers.

        Recipients the server refuses fail the attempt (:class:`SmtpRecipientsError`,
        naming each with the server's answer), although those it took got the mail:
        the handler remembers them by ``run`` (the completion a run is for, see
        :meth:`deliver`), and a retry mails only the others.
        That memory is the process's own (as ``notify``'s): after a restart, a
        reload, with ``isolation = "process"`` or past :data:`REMEMBERED_RUNS` runs,
        a retry mails every recipient again.
        """
        taken = self._taken(run)
        pending = [address for _, address in self._to if address not in taken]
        if not pending:
            return
        implicit = self._tls == "implicit" or (
            self._tls == "auto" and self.smtp_port == _IMPLICIT_PORT
        )
        client = aiosmtplib.SMTP(
            hostname=self.smtp_server,
            port=self.smtp_port,
            use_tls=implicit,
            start_tls=False,
            cert_bundle=self.ca_bundle,
            timeout=self.smtp_timeout,
        )
        transport = None
        try:
            try:
                await client.connect()
                refused = await self._converse(client, message, implicit, pending)
            except Exception as exc:
                unverified = _unverified(exc)
                if unverified is not None:
                    raise SmtpTlsError(self._unverified_message(unverified)) from exc
                if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
                    raise self._refusal(exc.recipients, len(pending)) from exc
                if isinstance(exc, aiosmtplib.SMTPResponseException) and _permanent(exc.code):
                    raise SmtpRejectedError(
                        f"{self._server} refused the mail: {exc.code} {exc.message}"
                    ) from exc
                raise
            taken.update(address for address in pending if address not in refused)
            transport = client.transport
            # The server took the mail (it answered the data): how it ends the session
            # changes nothing, and failing here would only send it again.
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
        finally:
            # After QUIT, or a failure, nothing is left to protect: drop the connection at
            # once rather than await the server's TLS close_notify, which an event loop
            # that ends next (test-handler, a process-isolated attempt) never receives,
            # leaving the socket open.
            transport = transport or client.transport
            client.close()
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        if refused:
            raise self._refusal(
                [
                    aiosmtplib.SMTPRecipientRefused(answer.code, answer.message, address)
                    for address, answer in refused.items()
                ],
                len(pending),
            )
        self._taken_by_run().pop(run, None)

    def _taken_by_run(self) -> dict[str, set[str]]:
        runs: dict[str, set[str]] | None = self.__dict__.get("_taken_runs")
        if runs is None:
            runs = self.__dict__["_taken_runs"] = {}
        return runs

    def _taken(self, run: str) -> set[str]:
        """The recipients that took the mail of ``run`` in its earlier attempts,
        kept for its next attempt; the oldest runs are forgotten past REMEMBERED_RUNS."""
        runs = self._taken_by_run()
        if not run:
            return set()
        taken = runs.pop(run, set())
        runs[run] = taken
        while len(runs) > REMEMBERED_RUNS:
            del runs[next(iter(runs))]
        return taken

    def _refusal(
        self, refusals: Sequence[aiosmtplib.SMTPRecipientRefused], pending: int
    ) -> SmtpRecipientsError | SmtpRejectedError:
        """The error for recipients refused: for good when every answer was a 5xx."""
        for_good = all(_permanent(refusal.code) for refusal in refusals)
        each = "; ".join(
            f"{refusal.recipient}: {refusal.code} {refusal.message} "
            f"({'permanent' if _permanent(refusal.code) else 'temporary'})"
            for refusal in refusals
        )
        if len(refusals) == pending:
            message = f"{self._server} refused every recipient: {each}"
        else:
            retry = "" if for_good else "; a retry mails only these"
            message = (
                f"{self._server} refused {len(refusals)} of {pending} recipients (the "
                f"others got the mail{retry}): {each}"
            )
        return SmtpRejectedError(message) if for_good else SmtpRecipientsError(message)

    def _unverified_message(self, error: ssl.SSLCertVerificationError) -> str:
        return (
            f"{self._server}: its TLS certificate could not be verified, so nothing was "
            f"sent ({error}). If a private CA signed it, name that CA's PEM file in "
            "ca_bundle ([smtp] ca_bundle, or the handler's CaBundle); if it is for another "
            "name, set SmtpServer ([smtp] host) to a name the certificate lists. "
            "Certificates are always verified."
        )

    async def _converse(
        self,
        client: aiosmtplib.SMTP,
        message: EmailMessage,
        implicit: bool,
        recipients: Sequence[str],
    ) -> dict[str, aiosmtplib.SMTPResponse]:
        """Log in if configured and send; the recipients the server refused (it took
        the others)."""
        if not implicit and self._tls != "none":
            await self._start_tls(client)
        if self.username:
            encrypted = client.get_transport_info("sslcontext") is not None
            if not encrypted and self._tls != "none":
                raise SmtpTlsError(
                    f"{self._server}: the connection is not encrypted, so the password "
                    "was not sent (the server does not offer STARTTLS; use port 465 "
                    'for implicit TLS, or set tls = "none" to send it in clear)'
                )
            password = self.password.reveal() if self.password is not None else ""
            await client.login(self.username, password)
        refused, _answer = await client.send_message(
            message, sender=self._from[1], recipients=list(recipients)
        )
        return refused

    async def _start_tls(self, client: aiosmtplib.SMTP) -> None:
        """Upgrade with STARTTLS when the server offers it; required unless ``auto``."""
        await client.ehlo()
        if client.supports_extension("starttls"):
            await client.starttls()
        elif self._tls == "starttls":
            raise SmtpTlsError(
                f'{self._server}: tls = "starttls" but the server does not offer STARTTLS'
            )

    @property
    def _server(self) -> str:
        return f"SMTP server {self.smtp_server}:{self.smtp_port}"

    @staticmethod
    def digest_body(context: JobCompleteContext) -> str:
        """A digest's completions as plain text: one line each, oldest first."""
        first, last = context.group[0], context.group[-1]
        lines = [
            f"{len(context.group)} orchestrator jobs completed "
            f"(completions {first.completion_id} to {last.completion_id}):",
            "",
            *digest_lines(context),
        ]
        if context.trigger is not None:
            lines += ["", f"Why this mail:   {context.trigger.reason}"]
        return "\n".join(lines)

    @staticmethod
    def details(context: JobCompleteContext) -> str:
        """The job's details as plain text lines."""
        lines = [
            f"Job type:        {context.job_type} ({context.job_type_id})",
            f"Job id:          {context.job_id}",
            f"Result:          {context.job_result.display}",
            f"Retries:         {context.current_retry_count}",
            f"Orchestrator:    {context.client_machine} (agent {context.agent_id})",
            f"Username:        {context.username}",
            f"Operation:       {context.operation_type.display}",
        ]
        if context.certificate_id is not None:
            lines.append(f"Certificate id:  {context.certificate_id}")
        if context.request_timestamp is not None:
            lines.append(f"Requested:       {context.request_timestamp.isoformat()}")
        if context.job_history_id is not None:
            lines.append(f"Job history id:  {context.job_history_id}")
        lines.append(f"Completion:      {context.completion_id} ({context.source})")
        if context.trigger is not None:
            lines.append(f"Why this mail:   {context.trigger.reason}")
        if context.message:
            lines += ["", "Message from the orchestrator:", context.message]
        return "\n".join(lines)
