"""``send-email``: the seed's built-in SendEmailOrchestratorJobCompleteHandler."""

from __future__ import annotations

from jobhooks import JobCompleteContext
from jobhooks.handlers._mail import EmailHandler


class SendEmailHandler(EmailHandler):
    """Email the job's basic details on every completion it matches."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        subject = (
            f"Orchestrator {context.job_type} job {context.job_result.display} "
            f"on {context.client_machine}"
        )
        await self.send(self.compose(context, subject, self.details(context)))
        return True
