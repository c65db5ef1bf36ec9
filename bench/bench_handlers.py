"""Handlers the benchmarks register (importable from the bench folder)."""

from __future__ import annotations

import asyncio
import time

from jobhooks import JobCompleteContext, JobCompleteHandler


class Noop(JobCompleteHandler):
    """Does nothing: what is measured is jobhooks itself."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class SyncNoop(JobCompleteHandler):
    """Does nothing, synchronously: a plain function, as the baselines' tasks are."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class SyncSleep(JobCompleteHandler):
    """Waits ``seconds``, blocking its thread (a slow synchronous SMTP or HTTP call)."""

    seconds: float = 2.0

    def run_handler(self, context: JobCompleteContext) -> bool:
        time.sleep(self.seconds)
        return True


class Sleep(JobCompleteHandler):
    """Waits ``seconds`` (a slow SMTP server, a hanging webhook)."""

    seconds: float = 2.0

    async def run_handler(self, context: JobCompleteContext) -> bool:
        await asyncio.sleep(self.seconds)
        return True
