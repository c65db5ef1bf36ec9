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
500 Internal Server Error``), never quoting an exception's text, which may
hold the URL. A receiver's answer is not shown either, since receivers echo
what they were sent in ways no mask can foresee (a path segment, a query
value decoded, the Basic header in base64); ``show_answer = true`` adds its
first 200 characters, each secret part (in any case, escaped or encoded)
masked, for a receiver known not to echo. Of any answer at most its first
4,000 bytes are read, never decompressed, for at most a second, then the
connection is closed: a receiver may answer with gigabytes, or with a few
compressed ones, or never end its answer. Its status alone decides: a receiver
that accepted the delivery got it, however the rest of its answer goes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http
import json
import os
import re
import socket
import ssl
from collections.abc import AsyncGenerator, Iterable
from datetime import UTC, datetime
from typing import cast
from urllib.parse import parse_qsl, quote, quote_plus

import httpx
from standardwebhooks import Webhook

from jobhooks import JobCompleteContext, JobCompleteHandler, PermanentFailure, Secret
from jobhooks.handlers._redact import redaction, url_parts
from jobhooks.sdk.secret import MASK

SCHEMA_VERSION = 1
_RESERVED = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHOWN_BODY = 200
_READ_BODY = _SHOWN_BODY * 20
"""Bytes of an answer read at most: what ``show_answer`` masks, then cuts to
``_SHOWN_BODY`` characters (so no secret is left half shown at the cut)."""
_READ_TIME = 1.0
"""Seconds the rest of an answer is read at most once its status has come: a receiver
that sends a byte now and then, never ending its answer, must not take the attempt to its
timeout (a 2xx would then be retried, delivered twice)."""


class WebhookError(RuntimeError):
    """The receiver did not accept the delivery (retried)."""


class WebhookGoneError(PermanentFailure):
    """The receiver answered ``410 Gone``: it was removed for good, as Standard Webhooks
    senders read that answer, so the run is not retried."""


class WebhookHandler(JobCompleteHandler):
    """POST the completion as a signed JSON document to ``url``."""

    url: Secret
    secret: Secret | None = None
    headers: dict[str, Secret] = {}  # noqa: RUF012  (a property default, never mutated)
    request_timeout: float = 10.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    """A PEM file of the private CA that signed the receiver's certificate."""
    show_answer: bool = False
    """Put the start of a refusing receiver's answer in the error (secret parts masked)."""

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
        self._tls: ssl.SSLContext | None = None
        if self.ca_bundle is not None and self.verify_tls:
            try:
                self._tls_context()
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

    def __getstate__(self) -> dict[str, object]:
        # An SSL context cannot be pickled (sent to a child process, isolation =
        # "process"): the child makes its own on its first delivery.
        return {**self.__dict__, "_tls": None}

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS settings of every delivery, made once: loading the trusted certificates
        takes milliseconds of the event loop, which check-ins share."""
        if self._tls is None:
            if self.ca_bundle is not None and self.verify_tls:
                self._tls = ssl.create_default_context(cafile=self.ca_bundle)
            else:
                self._tls = httpx.create_ssl_context(verify=self.verify_tls)
        return self._tls

    def message_id(self, context: JobCompleteContext) -> str:
        """A stable id for this handler's run on this completion (the same on retries)."""
        digest = hashlib.sha256(f"{context.completion_id}\0{self.name}".encode()).hexdigest()
        return f"msg_{digest[:32]}"

    def document(self, context: JobCompleteContext, moment: datetime) -> str:
        """The JSON body of the delivery (a digest: ``type`` ``digest`` and every completion
        in ``completions``, oldest first)."""
        payload: dict[str, object] = {
            "type": "job.completed",
            "schema_version": SCHEMA_VERSION,
            "timestamp": moment.isoformat().replace("+00:00", "Z"),
            "data": context.to_dict(),
        }
        if context.is_digest:
            payload["type"] = "digest"
            payload["count"] = len(context.group)
            payload["completions"] = [member.to_dict() for member in context.group]
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def run_handler(self, context: JobCompleteContext) -> bool:
        moment = datetime.now(UTC).replace(microsecond=0)
        body = self.document(context, moment)
        message_id = self.message_id(context)
        headers = {
            **{name: value.reveal() for name, value in self.headers.items()},
            "content-type": "application/json",
            "user-agent": "jobhooks-webhook",
            # The answer is read raw and bounded: a compressed one could inflate to gigabytes.
            "accept-encoding": "identity",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(moment.timestamp())),
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(message_id, moment, body)
        # A client per delivery: a handler has no hook to close a kept one, whose
        # idle connection would outlive the event loop it was made on.
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self.request_timeout, verify=self._tls_context()
                ) as client,
                client.stream(
                    "POST", self.url.reveal(), content=body.encode(), headers=headers
                ) as response,
            ):
                status = response.status_code
                # Read (an ordinary answer whole, so the receiver sees a clean close), but
                # never past what show_answer would need.
                answer = await _start_of(response)
        except Exception as exc:
            # Never the exception's text: httpx's may quote the URL. `from None` keeps
            # it out of the stored traceback too.
            raise WebhookError(f"POST to {self._where} failed: {_reason(exc)}") from None
        if not 200 <= status < 300:
            refusal = WebhookGoneError if status == http.HTTPStatus.GONE else WebhookError
            answered = f"POST to {self._where} answered {status} {_phrase(status)}"
            if not self.show_answer:
                raise refusal(answered)
            shown = self._redacted.sub(MASK, answer)[:_SHOWN_BODY]
            raise refusal(f"{answered}: {shown!r}")
        return True


def _where(url: httpx.URL) -> str:
    """``host:port`` of the receiver: all an error may say about the URL."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port or _DEFAULT_PORTS[url.scheme]}"


async def _start_of(response: httpx.Response) -> str:
    """The first ``_READ_BODY`` bytes of an answer as they arrived, never decompressed (a
    receiver that compresses although asked not to shows as it sent), as text; what
    arrived before the connection broke, or within ``_READ_TIME``, if it did not all."""
    raw = b""
    # aiter_raw is an async generator (typed as an iterator): closed here, not when
    # collected, so it ends before the response does.
    chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(_READ_TIME), contextlib.aclosing(chunks):
            async for chunk in chunks:
                raw += chunk[: _READ_BODY - len(raw)]
                if len(raw) >= _READ_BODY:
                    break
    try:
        return raw.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def _phrase(status: int) -> str:
    """The standard reason phrase (a receiver's own may echo what it was sent)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "(an unknown status)"


def _secret_parts(url: httpx.URL, text: str, headers: Iterable[Secret]) -> re.Pattern[str]:
    """What a receiver's answer might echo that must not be shown: the URL's parts
    (:func:`~jobhooks.handlers._redact.url_parts`, also as httpx sends them), each
    header value and each word of it."""
    raw_path = url.raw_path.decode("ascii", "replace")
    query = url.query.decode("ascii", "replace")
    parts = url_parts(text) | {
        raw_path,
        url.path,
        query,
        url.fragment,
        url.userinfo.decode("ascii", "replace"),
        url.username,
        url.password or "",
        base64.b64encode(f"{url.username}:{url.password or ''}".encode()).decode(),
        *raw_path.split("/"),
        *url.path.split("/"),
    }
    for name, value in parse_qsl(query, keep_blank_values=True):
        parts.update((name, value, quote(value, safe=""), quote_plus(value)))
    for header in headers:
        value = header.reveal()
        parts.update((value, *value.split()))
    return redaction(parts)


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
