"""``webhook``: POST each completion as JSON, signed the Standard Webhooks way.

The document (``schema_version`` 1)::

    {"type": "job.completed", "schema_version": 1, "timestamp": "2026-11-22T10:00:05Z",
     "data": {<every context field, as in JobCompleteContext.to_dict()>}}

Headers: ``webhook-id`` (the same for every attempt of one run, so receivers
can drop repeats), ``webhook-timestamp`` (seconds since the epoch) and, with
a ``secret``, ``webhook-signature: v1,<base64 HMAC-SHA256>``.

``url`` and the ``headers`` values are secrets: a URL may carry user info, a
token in its query or a secret path (Slack's ``/services/T000/B000/XXXX``),
and headers carry API keys. They are shown masked, and an error names the
receiver by host and port only (``POST to hooks.example.com:443 answered
500 ...``), never quoting an exception's text, which may hold the URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from jobhooks import JobCompleteContext, JobCompleteHandler, Secret
from jobhooks.sdk.secret import MASK

SCHEMA_VERSION = 1
_RESERVED = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MIN_REDACTED = 4
"""Shorter parts of the URL or header values are not masked in a receiver's answer: too
common to be secret, and masking them would garble the text."""
_SHOWN_BODY = 200


class WebhookError(RuntimeError):
    """The receiver did not accept the delivery."""


class WebhookHandler(JobCompleteHandler):
    """POST the completion as a signed JSON document to ``url``."""

    url: Secret
    secret: Secret | None = None
    headers: dict[str, Secret] = {}  # noqa: RUF012  (a property default, never mutated)
    request_timeout: float = 10.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    """A PEM file of the private CA that signed the receiver's certificate."""

    def setup(self) -> None:
        reference = f" ({self.url.reference})" if self.url.reference else ""
        try:
            url = httpx.URL(self.url.reveal())
        except httpx.InvalidURL:
            # The parser's message may quote the URL.
            raise ValueError(f"property url{reference}: not a valid URL") from None
        if url.scheme not in _DEFAULT_PORTS:
            raise ValueError(
                f"property url{reference}: expected an http:// or https:// URL"
                + (f", got a URL with scheme {url.scheme!r}" if url.scheme else "")
            )
        if not url.host:
            raise ValueError(f"property url{reference}: the URL names no host")
        self._where = _where(url)
        self._redacted = _secret_parts(url, self.url.reveal(), self.headers.values())
        self._verify: ssl.SSLContext | bool = self.verify_tls
        if self.ca_bundle is not None and self.verify_tls:
            try:
                self._verify = ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"property ca_bundle: cannot load {self.ca_bundle}: {exc}"
                ) from None
        self._signer = None
        if self.secret is not None:
            value = self.secret.reveal()
            if not value.startswith("whsec_"):
                raise ValueError(
                    "property secret: expected a Standard Webhooks secret 'whsec_<base64>'"
                )
            try:
                self._signer = Webhook(value)
            except Exception:
                raise ValueError("property secret: the part after 'whsec_' is not base64") from None
        clashes = sorted(name for name in self.headers if name.lower() in _RESERVED)
        if clashes:
            raise ValueError(f"property headers: {', '.join(clashes)} are set by jobhooks")

    def message_id(self, context: JobCompleteContext) -> str:
        """A stable id for this handler's run on this completion (the same on retries)."""
        digest = hashlib.sha256(f"{context.completion_id}\0{self.name}".encode()).hexdigest()
        return f"msg_{digest[:32]}"

    def document(self, context: JobCompleteContext, moment: datetime) -> str:
        """The JSON body of the delivery."""
        payload = {
            "type": "job.completed",
            "schema_version": SCHEMA_VERSION,
            "timestamp": moment.isoformat().replace("+00:00", "Z"),
            "data": context.to_dict(),
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def run_handler(self, context: JobCompleteContext) -> bool:
        moment = datetime.now(UTC).replace(microsecond=0)
        body = self.document(context, moment)
        message_id = self.message_id(context)
        headers = {
            **{name: value.reveal() for name, value in self.headers.items()},
            "content-type": "application/json",
            "user-agent": "jobhooks-webhook",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(moment.timestamp())),
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(message_id, moment, body)
        # A client per delivery: a handler has no hook to close a kept one, whose
        # idle connection would outlive the event loop it was made on.
        try:
            async with httpx.AsyncClient(
                timeout=self.request_timeout, verify=self._verify
            ) as client:
                response = await client.post(
                    self.url.reveal(), content=body.encode(), headers=headers
                )
        except Exception as exc:
            # Never the exception's text: httpx's may quote the URL. `from None` keeps
            # it out of the stored traceback too.
            raise WebhookError(f"POST to {self._where} failed: {_reason(exc)}") from None
        if not 200 <= response.status_code < 300:
            # Redacted before it is cut, so no secret is left half shown at the cut.
            shown = self._redact(response.text[: _SHOWN_BODY * 20])[:_SHOWN_BODY]
            raise WebhookError(
                f"POST to {self._where} answered {response.status_code} "
                f"{self._redact(response.reason_phrase)}: {shown!r}"
            )
        return True

    def _redact(self, text: str) -> str:
        """``text`` with every secret part of the URL and every header value masked."""
        for part in self._redacted:
            text = text.replace(part, MASK)
        return text


def _where(url: httpx.URL) -> str:
    """``host:port`` of the receiver: all an error may say about the URL."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port or _DEFAULT_PORTS[url.scheme]}"


def _secret_parts(url: httpx.URL, text: str, headers: Iterable[Secret]) -> tuple[str, ...]:
    """The strings a receiver's answer might echo that must not be shown, longest first."""
    raw_path = url.raw_path.decode("ascii", "replace")
    parts = {
        text,
        raw_path,
        url.path,
        url.query.decode("ascii", "replace"),
        url.fragment,
        url.userinfo.decode("ascii", "replace"),
        url.username,
        url.password or "",
        *(value.reveal() for value in headers),
    }
    kept = (part for part in parts if len(part.strip("/")) >= _MIN_REDACTED)
    return tuple(sorted(kept, key=len, reverse=True))


def _reason(exc: BaseException) -> str:
    """The exception's type, with a cause that cannot hold the URL: a TLS or OS error."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"{type(exc).__name__} ({cause.reason}: {cause.verify_message})"
        if isinstance(cause, ssl.SSLError) and cause.reason:
            return f"{type(exc).__name__} ({cause.reason})"
        if isinstance(cause, socket.gaierror) and cause.strerror:
            return f"{type(exc).__name__} ({cause.strerror})"
        if isinstance(cause, OSError) and cause.errno:
            return f"{type(exc).__name__} ({os.strerror(cause.errno)})"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__
