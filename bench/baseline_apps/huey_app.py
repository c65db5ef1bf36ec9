"""FastAPI endpoint that enqueues one huey task per report (SqliteHuey).

Environment: ``BASELINE_HUEY_DB`` (queue file, required) and ``BASELINE_HUEY_DONE_DB``
(completion counter file, default: the queue file with ``-done`` appended).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from huey import SqliteHuey

from baseline_apps.completions import SqliteCompletions
from baseline_apps.report import PATH, Accepted, JobCompletion

HUEY_DB = os.environ["BASELINE_HUEY_DB"]
DONE_DB = os.environ.get("BASELINE_HUEY_DONE_DB", HUEY_DB + "-done")

huey = SqliteHuey("baseline", filename=HUEY_DB)

completions = SqliteCompletions(DONE_DB)


@huey.task()
def handle_completion(report: dict[str, Any]) -> None:
    """No-op handler: only records that it ran."""
    completions.record()


app = FastAPI()


@app.post(PATH, status_code=202)
async def accept_completion(report: JobCompletion) -> Accepted:
    result = handle_completion(report.model_dump(mode="json"))
    return Accepted(id=result.id)
