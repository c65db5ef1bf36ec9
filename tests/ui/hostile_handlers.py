"""A handler type for the dashboard's hostile-data tests, registered as
``ui.hostile_handlers:EchoesMessage`` (the tests folder is on the server's path)."""

from __future__ import annotations

from jobhooks import JobCompleteContext, JobCompleteHandler


class EchoesMessage(JobCompleteHandler):
    """Fails with the orchestrator's message as its error: a handler whose error text
    quotes what the agent sent (an SMTP or HTTP answer often does)."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise RuntimeError(context.message)
