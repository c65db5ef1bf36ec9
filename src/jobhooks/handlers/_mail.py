"""What the email handlers share: SMTP properties, message building and sending."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import ClassVar

import aiosmtplib

from jobhooks import JobCompleteContext, JobCompleteHandler, Secret
from jobhooks.handlers._templates import compile_template, render

__all__ = ["EmailHandler", "header_text"]


def header_text(value: str, limit: int = 200) -> str:
    """Make a value safe for a header: no CR, LF or other control characters."""
    cleaned = "".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in value)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class EmailHandler(JobCompleteHandler):
    """Base of the email handlers: the seed's SMTP properties, defaulting to ``[smtp]``."""

    smtp_defaults: ClassVar[bool] = True

    email_recipients: list[str]
    smtp_server: str | None = None
    smtp_port: int = 25
    username: str | None = None
    password: Secret | None = None
    mail_from: str | None = None
    starttls: bool = False
    tls: bool = False
    ca_bundle: str | None = None
    """PEM file of the CA(s) to trust for the server's certificate, besides the system's."""
    smtp_timeout: float = 30.0
    subject: str | None = None
    body: str | None = None

    def setup(self) -> None:
        self._subject = compile_template(self.subject, "subject") if self.subject else None
        self._body = compile_template(self.body, "body") if self.body else None
        if not self.smtp_server:
            raise ValueError("property SmtpServer: not set here and [smtp] host is empty")
        if not self.mail_from:
            raise ValueError("property MailFrom: not set here and [smtp] mail_from is empty")
        if not self.email_recipients:
            raise ValueError("property EmailRecipients: list at least one address")
        if self.starttls and self.tls:
            raise ValueError("starttls and tls exclude each other: choose one")
        if self.password is not None and not self.username:
            raise ValueError("property Password is set but Username is not")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ValueError(f"property CaBundle: no such file: {self.ca_bundle}")

    def compose(self, context: JobCompleteContext, subject: str, body: str) -> EmailMessage:
        """The message for a context: the templates when configured, else the defaults."""
        if self._subject is not None:
            subject = render(self._subject, context, "subject")
        if self._body is not None:
            body = render(self._body, context, "body")
        return self.build_message(subject, body)

    def build_message(self, subject: str, body: str) -> EmailMessage:
        """A plain-text message from MailFrom to EmailRecipients."""
        message = EmailMessage()
        message["From"] = header_text(self.mail_from or "")
        message["To"] = ", ".join(header_text(address) for address in self.email_recipients)
        message["Subject"] = header_text(subject)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain="jobhooks")
        message.set_content(body)
        return message

    async def send(self, message: EmailMessage) -> None:
        """Send through the configured SMTP server; raises on any delivery error."""
        await aiosmtplib.send(
            message,
            hostname=self.smtp_server,
            port=self.smtp_port,
            username=self.username,
            password=self.password.reveal() if self.password is not None else None,
            start_tls=self.starttls,
            use_tls=self.tls,
            cert_bundle=self.ca_bundle,
            timeout=self.smtp_timeout,
        )

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
        if context.message:
            lines += ["", "Message from the orchestrator:", context.message]
        return "\n".join(lines)
