"""``notify``: chat, paging and push notifications through Apprise.

Slack, Microsoft Teams, PagerDuty, Discord, email, ntfy and a hundred more
services are each one Apprise URL away; see the Apprise documentation for
the URL of each service.

The URLs are secrets, and not only their passwords: a webhook's path, a
header's value in the query or an ntfy topic give access too. An error names
each URL that failed by its position, scheme and host only (``urls[1]
ntfy://ntfy.example.com``), and every other part of the URLs is masked in what
Apprise logs. Each URL is notified on its own; a retry notifies only those that
failed before, as remembered by the handler (so after a restart or a reload,
all of them again).

Each send runs on a thread of its own, never on a pool shared with other sends:
Apprise's services block on their sockets and cannot be stopped, and a
receiver that takes a request but never ends its answer holds its send past
every timeout (a read timeout is per read). Such a send holds its thread until
the receiver lets go, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import re
import threading
import weakref
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

import apprise

from jobhooks import JobCompleteContext, JobCompleteHandler, JobResult, Secret
from jobhooks.handlers._digest import digest_lines, digest_title
from jobhooks.handlers._redact import redaction, url_parts
from jobhooks.handlers._templates import compile_template, render
from jobhooks.sdk.secret import MASK

DEFAULT_TITLE = "{{ job_type }} job {{ job_result }} on {{ client_machine }}"
DEFAULT_BODY = (
    "Job {{ job_id }} ({{ job_type }}) ended {{ job_result }} on {{ client_machine }}"
    " (agent {{ agent_id }}), retry count {{ current_retry_count }}."
    "{% if trigger %}\nWhy: {{ trigger.reason }}{% endif %}"
    "{% if message %}\n{{ message }}{% endif %}"
)
REMEMBERED_RUNS = 1000
"""Runs whose notified URLs a handler remembers at most, forgetting the oldest first (a run
is forgotten once it succeeds; one that never does must not be kept for ever)."""

_NOTIFY_TYPES = {
    JobResult.SUCCESS: apprise.NotifyType.SUCCESS,
    JobResult.WARNING: apprise.NotifyType.WARNING,
    JobResult.FAILURE: apprise.NotifyType.FAILURE,
}
"""What sets each service's colour, icon or severity; other results are ``info``."""

_LOGGERS = ("apprise", "urllib3.connectionpool")
"""Where the URLs' parts are logged: by Apprise, and by urllib3 (each request's path, at
debug level), through which Apprise's services send."""

logger = logging.getLogger("jobhooks.handlers.notify")

_HOST_NAME = re.compile(r"localhost|(?:[a-z0-9-]{1,63}\.)+[a-z]{2,63}", re.IGNORECASE)


class NotifyError(RuntimeError):
    """Apprise could not deliver to every URL."""


class NotifyHandler(JobCompleteHandler):
    """Notify every Apprise URL in ``urls`` of completions whose result is in ``results``
    (with rules, ``when = [...]``, of every completion the rules chose). A digest is one
    notification: the count in its title, one line per completion in its body."""

    urls: list[Secret]
    results: list[str] = ["failure"]  # noqa: RUF012  (a property default, never mutated)
    title: str = DEFAULT_TITLE
    body: str = DEFAULT_BODY

    def setup(self) -> None:
        if not self.urls:
            raise ValueError("property urls: list at least one Apprise URL")
        try:
            self._results = frozenset(JobResult.parse(value) for value in self.results)
        except ValueError as exc:
            raise ValueError(f"property results: {exc}") from None
        self._title = compile_template(self.title, "title")
        self._body = compile_template(self.body, "body")
        texts = [url.reveal() for url in self.urls]
        for position, text in enumerate(texts):
            try:
                urlsplit(text)
            except ValueError:
                raise ValueError(_unrecognised(position)) from None
        # Before any URL reaches Apprise, which logs each one it loads.
        self._redact = _Redact(texts)
        self._redact.install()
        weakref.finalize(self, self._redact.uninstall)
        self._targets: list[apprise.Apprise] = []
        for position, text in enumerate(texts):
            # Sending in the calling thread (see _in_a_thread), with no deadline: with one,
            # Apprise moves a send onto its process-wide pool of a few threads, which as
            # many sends stuck on receivers that never answer hold for good.
            target = apprise.Apprise(
                asset=apprise.AppriseAsset(async_mode=False, service_timeout=0)
            )
            if not target.add(text):
                raise ValueError(_unrecognised(position))
            self._targets.append(target)
        self._names = [f"urls[{position}] {_shown(text)}" for position, text in enumerate(texts)]
        self._runs: dict[str, set[int]] = {}

    async def run_handler(self, context: JobCompleteContext) -> bool:
        self._redact.install()  # again in a child process (isolation), where setup() did not run
        run = context.completion_id
        if context.trigger is None:
            chosen = tuple(m for m in context.group if m.job_result in self._results)
            if not chosen:
                logger.debug(
                    "not sent: the job ended %s; results = %s",
                    context.job_result.display,
                    list(self.results),
                )
                return True
            if len(chosen) != len(context.group):
                context = dataclasses.replace(chosen[-1], group=chosen)
        if context.is_digest and self.title == DEFAULT_TITLE:
            title = f"Digest: {digest_title(context)}"
        else:
            title = render(self._title, context, "title")
        if context.is_digest and self.body == DEFAULT_BODY:
            why = f"\nWhy: {context.trigger.reason}" if context.trigger else ""
            body = "\n".join(digest_lines(context)) + why
        else:
            body = render(self._body, context, "body")
        notify_type = _NOTIFY_TYPES.get(context.job_result, apprise.NotifyType.INFO)
        failed = await self._notify_pending(run, title, body, notify_type)
        if failed:
            raise NotifyError(
                f"Apprise could not deliver to every URL; failed: {', '.join(failed)}"
            )
        return True

    async def _notify_pending(
        self, run: str, title: str, body: str, notify_type: apprise.NotifyType
    ) -> list[str]:
        """Notify, together, each URL that ``run`` (a completion's id) has not notified
        yet; the names of those that failed. A run is remembered until none fails."""
        delivered = self._delivered(run)
        pending = [p for p in range(len(self._targets)) if p not in delivered]
        await asyncio.gather(
            *(self._notify(p, delivered, title, body, notify_type) for p in pending)
        )
        failed = [self._names[p] for p in pending if p not in delivered]
        if not failed:
            self._runs.pop(run, None)
        return failed

    def _delivered(self, run: str) -> set[int]:
        """The positions in ``urls`` that ``run`` has notified, kept for its next attempt;
        the oldest runs are forgotten past ``REMEMBERED_RUNS``."""
        if not run:
            return set()
        delivered = self._runs.pop(run, set())
        self._runs[run] = delivered
        while len(self._runs) > REMEMBERED_RUNS:
            del self._runs[next(iter(self._runs))]
        return delivered

    async def _notify(
        self,
        position: int,
        delivered: set[int],
        title: str,
        body: str,
        notify_type: apprise.NotifyType,
    ) -> None:
        """Notify ``urls[position]``, and add it to ``delivered`` at once when it took the
        notification (an attempt that times out later still counts it)."""
        target = self._targets[position]

        def send() -> None:
            # Text: Apprise escapes it for a service that renders HTML or Markdown (mail,
            # Teams, Slack ...), so an orchestrator's message is shown, never rendered.
            if target.notify(
                body=body,
                title=title,
                notify_type=notify_type,
                body_format=apprise.NotifyFormat.TEXT,
            ):
                delivered.add(position)

        await _in_a_thread(send)


class _Redact(logging.Filter):
    """Masks every part of some Apprise URLs but the host an error shows, in each record
    of the loggers Apprise writes to."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        parts: set[str] = set()
        for url in urls:
            parts |= url_parts(url)
            split = urlsplit(url)
            if _host(split) is None:  # a secret in the host's place: mask it too
                where = split.netloc.rpartition("@")[2]
                parts |= {where, *where.split(":")}
        self._secret = redaction(parts)

    def install(self) -> None:
        """Filter the loggers' records (once, however often it is called)."""
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(self)

    def uninstall(self) -> None:
        """Stop filtering (when the handler is gone, as after a reload)."""
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: keep the template alone
            message = str(record.msg)
        record.msg, record.args = self._secret.sub(MASK, message), None
        if record.exc_info:
            # Formatters may format exc_info afresh (jobhooks' JSON one does): keep only
            # the masked text, which every formatter prints instead.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self._secret.sub(MASK, record.exc_text)
        if record.stack_info:
            record.stack_info = self._secret.sub(MASK, record.stack_info)
        return True


async def _in_a_thread(call: Callable[[], None]) -> None:
    """Run ``call`` on a daemon thread of its own and await its end (or its exception).
    Nothing waits for the thread once the caller stops waiting: a call that never returns
    holds that thread alone."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if ended.done():  # the attempt was cancelled (timed out) meanwhile
            return
        if error is None:
            ended.set_result(None)
        else:
            ended.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            call()
        except Exception as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the event loop closed in the meantime
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="jobhooks-notify", daemon=True).start()
    await ended


def _unrecognised(position: int) -> str:
    return (
        f"property urls[{position}]: Apprise does not recognise this URL "
        "(check its scheme and form)"
    )


def _shown(url: str) -> str:
    """``scheme://host:port`` of an Apprise URL, all an error may say of it; the host
    masked unless :func:`_host` shows it."""
    parts = urlsplit(url)
    host = _host(parts)
    if host is None:
        return f"{parts.scheme}://{MASK}"
    shown = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}"
    try:
        return f"{shown}:{parts.port}" if parts.port else shown
    except ValueError:  # not a number: no port, but a secret in its place
        return shown


def _host(parts: SplitResult) -> str | None:
    """The URL's host if it is an IP address or a DNS name, else None: many services put
    a secret in the host's place (ntfy.sh's topic, a Slack or Telegram token)."""
    host = parts.hostname or ""
    if _HOST_NAME.fullmatch(host):
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None
