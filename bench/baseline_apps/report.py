"""The job-completion report accepted by the baseline endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

PATH = "/api/v1/job-completions"


class JobCompletion(BaseModel):
    """One job-completion report as posted by the orchestrator."""

    agent_id: uuid.UUID
    username: str
    client_machine: str
    job_id: uuid.UUID
    job_type: str
    job_type_id: uuid.UUID
    operation_type: str | int
    job_result: str | int
    certificate_id: int | None = None
    request_timestamp: datetime | None = None
    current_retry_count: int | None = None
    message: str | None = None


class Accepted(BaseModel):
    """Body of the 202 answer."""

    id: str
