"""Models that document the API in /openapi.json (the check-in parses its body itself)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobhooks.sdk.context import MAX_ID, MAX_RETRY_COUNT
from jobhooks.sdk.enums import JobResult, OperationType

__all__ = ["CheckinAnswer", "CompletionReport", "RunAnswer"]

# The values the parser accepts, spelled out for the OpenAPI document (names are
# also accepted in any other spelling, which a schema cannot say).
JobResultValue = Literal[0, 1, 2, 3, 4, "Unknown", "InProcess", "Success", "Warning", "Failure"]
OperationTypeValue = Literal[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
    "Unknown", "Inventory", "Add", "Remove", "Create", "CreateAdd",
    "Reenrollment", "Discovery", "SetPassword", "FetchLogs",
]  # fmt: skip


STORABLE = r"^[^\x00]*$"
"""Text fields take any text but a NUL character, which no database stores."""


class CompletionReport(BaseModel):
    """A completed orchestrator job. Keys may also be PascalCase (``AgentId``), and
    enums may be given by integer or by name in any spelling."""

    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID
    username: str | None = Field("", max_length=512, pattern=STORABLE)
    client_machine: str | None = Field("", max_length=512, pattern=STORABLE)
    job_id: uuid.UUID
    job_type: str = Field(max_length=512, pattern=STORABLE)
    job_type_id: uuid.UUID
    operation_type: OperationTypeValue | None = Field(
        0,
        description="OperationType: " + ", ".join(f"{m.display}={m.value}" for m in OperationType),
    )
    job_result: JobResultValue = Field(
        description="JobResult: " + ", ".join(f"{m.display}={m.value}" for m in JobResult)
    )
    certificate_id: int | None = Field(None, ge=0, le=MAX_ID)
    request_timestamp: datetime | None = None
    current_retry_count: int | None = Field(
        None,
        ge=0,
        le=MAX_RETRY_COUNT,
        description="Omit it to let jobhooks count the job's consecutive failures.",
    )
    job_history_id: int | None = Field(None, ge=0, le=MAX_ID)
    message: str | None = Field(None, max_length=32_768, pattern=STORABLE)


class TriggerAnswer(BaseModel):
    """Why a run exists when its registration has rules (``when``)."""

    kind: str
    streak: int
    since: str | None = Field(description="When the job's streak began (ISO 8601, UTC).")
    reason: str


class RunAnswer(BaseModel):
    """A handler run created for a completion."""

    id: str
    handler: str
    status: str
    trigger: TriggerAnswer | None = Field(
        None, description="Why the run exists; null for a registration that runs always."
    )
    closes_at: float | None = Field(
        None,
        description="For a digest still collecting (status collecting): when it stops taking "
        "completions and becomes due (UTC seconds since the epoch).",
    )


class CheckinAnswer(BaseModel):
    """The answer to a check-in: the completion's id and its handler runs."""

    id: str
    duplicate: bool
    handler_runs: list[RunAnswer]
