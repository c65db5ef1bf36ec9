"""``send-email``: the seed's built-in SendEmailOrchestratorJobCompleteHandler."""

from __future__ import annotations

from jobhooks import JobCompleteContext
from jobhooks.handlers._digest import digest_title
from jobhooks.handlers._mail import EmailHandler


class SendEmailHandler(EmailHandler):
    """Email the job's basic details on every completion it matches (a digest: one mail
    listing them all)."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        if context.is_digest:
            subject = f"Orchestrator digest: {digest_title(context)}"
            await self.deliver(context, subject, self.digest_body(context))
            return True
        subject = (
            f"Orchestrator {context.job_type} job {context.job_result.display} "
            f"on {context.client_machine}"
        )
        await self.deliver(context, subject, self.details(context))
        return True
