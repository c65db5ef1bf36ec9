"""``notify``: chat, paging and push notifications through Apprise.

Slack, Microsoft Teams, PagerDuty, Discord, email, ntfy and a hundred more
services are each one Apprise URL away; see the Apprise documentation for
the URL of each service.
"""

from __future__ import annotations

import dataclasses

import apprise

from jobhooks import JobCompleteContext, JobCompleteHandler, JobResult, Secret
from jobhooks.handlers._digest import digest_lines, digest_title
from jobhooks.handlers._templates import compile_template, render

DEFAULT_TITLE = "{{ job_type }} job {{ job_result }} on {{ client_machine }}"
DEFAULT_BODY = (
    "Job {{ job_id }} ({{ job_type }}) ended {{ job_result }} on {{ client_machine }}"
    " (agent {{ agent_id }}), retry count {{ current_retry_count }}."
    "{% if trigger %}\nWhy: {{ trigger.reason }}{% endif %}"
    "{% if message %}\n{{ message }}{% endif %}"
)

_NOTIFY_TYPES = {
    JobResult.SUCCESS: apprise.NotifyType.SUCCESS,
    JobResult.WARNING: apprise.NotifyType.WARNING,
    JobResult.FAILURE: apprise.NotifyType.FAILURE,
}
"""What sets each service's colour, icon or severity; other results are ``info``."""


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
        self._targets = apprise.Apprise()
        for position, url in enumerate(self.urls):
            if not self._targets.add(url.reveal()):
                raise ValueError(
                    f"property urls[{position}]: Apprise does not recognise this URL "
                    "(check its scheme and form)"
                )

    async def run_handler(self, context: JobCompleteContext) -> bool:
        if context.trigger is None:
            chosen = tuple(m for m in context.group if m.job_result in self._results)
            if not chosen:
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
        delivered = await self._targets.async_notify(
            body=body, title=title, notify_type=notify_type
        )
        if not delivered:
            # Privacy mode masks passwords and tokens, but not the custom headers
            # that some URLs carry in their query: leave the query out.
            shown = ", ".join(
                target.url(privacy=True).split("?", 1)[0]  # type: ignore[no-untyped-call]
                for target in self._targets
            )
            raise NotifyError(f"Apprise could not deliver to every URL ({shown})")
        return True
