"""``webhook``: POST each completion as JSON, signed the Standard Webhooks way.

The document (``schema_version`` 1)::

    {"type": "job.completed", "schema_version": 1, "timestamp": "2026-11-22T10:00:05Z",
     "data": {<every context field, as in JobCompleteContext.to_dict()>}}

Headers: ``webhook-id`` (the same for every attempt of one run, so receivers
can drop repeats), ``webhook-timestamp`` (seconds since the epoch) and, with
a ``secret``, ``webhook-signature: v1,<base64 HMAC-SHA256>``.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from jobhooks import JobCompleteContext, JobCompleteHandler, Secret

SCHEMA_VERSION = 1
_RESERVED = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}


class WebhookError(RuntimeError):
    """The receiver did not accept the delivery."""


class WebhookHandler(JobCompleteHandler):
    """POST the completion as a signed JSON document to ``url``."""

    url: str
    secret: Secret | None = None
    headers: dict[str, str] = {}  # noqa: RUF012  (a property default, never mutated)
    request_timeout: float = 10.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    """A PEM file of the private CA that signed the receiver's certificate."""

    def setup(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"property url: expected an http:// or https:// URL, got {self.url!r}")
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
            **self.headers,
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
                response = await client.post(self.url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            raise WebhookError(f"POST {self.url} failed: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise WebhookError(
                f"POST {self.url} answered {response.status_code}: {response.text[:200]!r}"
            )
        return True
