"""FastAPI endpoint that enqueues one Celery task per report (Redis broker).

Environment: ``BASELINE_REDIS_URL`` (broker and completion counter, default
``redis://127.0.0.1:6379/15``).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from fastapi import FastAPI

from baseline_apps.completions import RedisCompletions
from baseline_apps.report import PATH, Accepted, JobCompletion

REDIS_URL = os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/15")

celery = Celery("baseline", broker=REDIS_URL)
celery.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_prefetch_multiplier=64,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

completions = RedisCompletions(REDIS_URL)


@celery.task(name="baseline.handle_completion")
def handle_completion(report: dict[str, Any]) -> None:
    """No-op handler: only records that it ran."""
    completions.record()


app = FastAPI()


@app.post(PATH, status_code=202)
async def accept_completion(report: JobCompletion) -> Accepted:
    result = handle_completion.delay(report.model_dump(mode="json"))
    return Accepted(id=result.id)
