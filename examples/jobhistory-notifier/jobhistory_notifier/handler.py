"""On a failed job, read the job's recent history from the platform and notify.

``context.async_client`` is already set up for the platform's API (base URL,
credentials, TLS, the headers it requires) from ``[platform]`` in
jobhooks.toml, so a handler only names the endpoint.
"""

from __future__ import annotations

from typing import Any

import apprise

from jobhooks import JobCompleteContext, JobCompleteHandler, JobResult, Secret


class JobHistoryNotifier(JobCompleteHandler):
    """Notify the Apprise ``urls`` of a failed job, with the platform's messages for it."""

    urls: list[Secret]
    history_rows: int = 5

    def setup(self) -> None:
        self._targets = apprise.Apprise()
        for url in self.urls:
            if not self._targets.add(url.reveal()):
                raise ValueError("property urls: Apprise does not recognise one of the URLs")

    async def history(self, context: JobCompleteContext) -> list[dict[str, Any]]:
        """The job's most recent runs, newest first, as the platform reports them."""
        response = await context.async_client.get(
            "OrchestratorJobs/JobHistory",
            params={
                "pq.queryString": f'JobId -eq "{context.job_id}"',
                "pq.sortField": "OperationStart",
                "pq.sortAscending": 1,  # the platform's 0 means ascending
                "pq.returnLimit": self.history_rows,
            },
        )
        response.raise_for_status()
        rows = response.json()
        return rows if isinstance(rows, list) else []

    async def run_handler(self, context: JobCompleteContext) -> bool:
        if context.job_result is not JobResult.FAILURE:
            return True
        rows = await self.history(context)
        lines = [
            f"{row.get('OperationStart', '?')}  {row.get('Result', '?')}: "
            f"{row.get('Message') or ''}"
            for row in rows
        ]
        body = (
            f"{context.job_type} job {context.job_id} failed on {context.client_machine} "
            f"(retry count {context.current_retry_count}).\n"
            f"Orchestrator message: {context.message or '(none)'}\n\n"
            "Recent runs reported by the platform:\n" + ("\n".join(lines) or "(none found)")
        )
        title = f"Orchestrator {context.job_type} job failed on {context.client_machine}"
        if not await self._targets.async_notify(title=title, body=body):
            raise RuntimeError("Apprise could not deliver the notification")
        return True
