"""The demo's handler types."""

from __future__ import annotations

import asyncio
import random

from jobhooks import JobCompleteContext, JobCompleteHandler

__all__ = ["FlakyNotifier"]


class FlakyNotifier(JobCompleteHandler):
    """A stand-in for a notifier whose endpoint sometimes fails (the demo's retries)."""

    failure_rate: float = 0.2

    async def run_handler(self, context: JobCompleteContext) -> bool:
        await asyncio.sleep(0.002)
        if random.random() < self.failure_rate:
            raise ConnectionError("demo endpoint answered 503 Service Unavailable")
        return True
