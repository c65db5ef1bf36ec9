"""``acknowledge``: acknowledge a failed or warning run on the platform (pull mode)."""

from __future__ import annotations

import httpx

from jobhooks import JobCompleteContext, JobCompleteHandler, JobResult

ACKNOWLEDGE = "OrchestratorJobs/Acknowledge"
RESULTS = (JobResult.FAILURE, JobResult.WARNING)


class AcknowledgeError(RuntimeError):
    """The platform did not accept the acknowledgement."""


class AcknowledgeHandler(JobCompleteHandler):
    """POST ``OrchestratorJobs/Acknowledge`` with the run's job history id, so the failure
    or warning leaves the platform's list of jobs to look at. Register it after the
    handlers that act on the run; other results are left alone.

    The platform account needs the permission Agent Management: Modify.
    """

    async def run_handler(self, context: JobCompleteContext) -> bool:
        if context.job_result not in RESULTS:
            return True
        if context.job_history_id is None:
            raise AcknowledgeError(
                "this completion has no job_history_id, so there is no run to acknowledge "
                "(pull mode always sets it; a check-in must send it)"
            )
        try:
            response = await context.async_client.post(
                ACKNOWLEDGE, json={"JobAuditIds": [context.job_history_id]}
            )
        except httpx.HTTPError as exc:
            raise AcknowledgeError(
                f"POST {ACKNOWLEDGE} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not 200 <= response.status_code < 300:
            hint = (
                " (the account needs Agent Management: Modify)"
                if response.status_code == 403
                else ""
            )
            raise AcknowledgeError(
                f"POST {ACKNOWLEDGE} for job history id {context.job_history_id} answered "
                f"{response.status_code}{hint}: {response.text[:200]!r}"
            )
        return True
