"""``repeated-failure-email``: the seed's SendEmail_RepeatedFailureHandler sample."""

from __future__ import annotations

import dataclasses
import logging

from jobhooks import JobCompleteContext, JobResult
from jobhooks.handlers._digest import digest_title
from jobhooks.handlers._mail import EmailHandler, raise_all

logger = logging.getLogger("jobhooks.handlers.repeated_failure_email")


class RepeatedFailureEmailHandler(EmailHandler):
    """Email when a job failed and its retry count reached RetryThreshold.

    Subject ``Orchestrator {job_type} Job Failed``; the body begins with the
    sample's own four lines (``Orchestrator Job failed too many times:``, then
    tab-indented ``Type:``, ``JobId:``, ``Retries:``), so mail filters written
    for it keep working; the agent, the machine and the orchestrator's message
    follow after a blank line. Other completions are skipped (a successful run).

    With rules (``when = ["failure-streak", "recovered"]``), the rules decide
    instead: one mail when the streak fires, one (``Job Recovered``) when it ends.
    """

    retry_threshold: int = 2

    def setup(self) -> None:
        problems: list[Exception] = []
        try:
            super().setup()
        except ExceptionGroup as group:
            problems += group.exceptions
        except ValueError as exc:
            problems.append(exc)
        if self.retry_threshold < 0:
            problems.append(ValueError("property RetryThreshold: expected 0 or more"))
        raise_all(problems)

    def should_send(self, context: JobCompleteContext) -> bool:
        """The sample's rule (a failure at or past the threshold), unless the
        registration's rules already chose this moment."""
        if context.trigger is not None:
            return True
        return (
            context.job_result is JobResult.FAILURE
            and context.current_retry_count >= self.retry_threshold
        )

    def _why_not(self, context: JobCompleteContext) -> str:
        if context.job_result is not JobResult.FAILURE:
            return f"the job ended {context.job_result.display}; only failures are mailed"
        return (
            f"retry count {context.current_retry_count} is under RetryThreshold "
            f"{self.retry_threshold}"
        )

    async def run_handler(self, context: JobCompleteContext) -> bool:
        if context.is_digest:
            return await self._send_digest(context)
        if not self.should_send(context):
            logger.debug("not sent: %s", self._why_not(context))
            return True
        trigger = context.trigger
        if trigger is not None and trigger.kind == "recovered":
            subject = f"Orchestrator {context.job_type} Job Recovered"
            body = f"{trigger.reason}.\n\n" + self.details(context)
            await self.deliver(context, subject, body)
            return True
        subject = f"Orchestrator {context.job_type} Job Failed"
        # The rules chose this moment, not the threshold: say what did.
        why = (
            f"{trigger.reason}.\n"
            if trigger is not None
            else f"Retry count {context.current_retry_count}, threshold {self.retry_threshold}.\n"
        )
        body = (
            "Orchestrator Job failed too many times:\n"
            f"\tType: {context.job_type}\n"
            f"\tJobId: {context.job_id}\n"
            f"\tRetries: {context.current_retry_count}\n"
            "\n" + why + self.details(context)
        )
        await self.deliver(context, subject, body)
        return True

    async def _send_digest(self, context: JobCompleteContext) -> bool:
        """One mail for the digest's completions that pass :meth:`should_send`."""
        chosen = tuple(member for member in context.group if self.should_send(member))
        if not chosen:
            logger.debug("not sent: no completion of the digest is a failure at RetryThreshold")
            return True
        if len(chosen) == 1:
            return await self.run_handler(dataclasses.replace(chosen[0], group=()))
        digest = dataclasses.replace(chosen[-1], group=chosen)
        recovered = all(m.trigger is not None and m.trigger.kind == "recovered" for m in chosen)
        subject = (
            f"Orchestrator Jobs {'Recovered' if recovered else 'Failed'}: {digest_title(digest)}"
        )
        await self.deliver(digest, subject, self.digest_body(digest))
        return True
