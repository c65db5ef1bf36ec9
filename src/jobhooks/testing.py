"""Helpers for testing handlers: a realistic sample context."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from jobhooks.sdk.context import JobCompleteContext, canonical_key
from jobhooks.sdk.enums import JobResult, OperationType

__all__ = ["SAMPLE_AGENT_ID", "sample_context"]

SAMPLE_AGENT_ID = uuid.UUID("3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21")


def sample_context(**overrides: Any) -> JobCompleteContext:
    """A failed inventory job on a sample orchestrator; any field can be overridden.

    Overrides may use snake_case or PascalCase keys and enum names or integers,
    as a completion report does.
    """
    base: dict[str, Any] = {
        "agent_id": SAMPLE_AGENT_ID,
        "username": "EXAMPLE\\orchestrator01",
        "client_machine": "orchestrator01.example.com",
        "job_result": JobResult.FAILURE,
        "job_id": uuid.uuid4(),
        "job_type": "Inventory",
        "job_type_id": uuid.UUID(int=0),
        "operation_type": OperationType.INVENTORY,
        "certificate_id": None,
        "request_timestamp": datetime.now(UTC).replace(microsecond=0),
        "current_retry_count": 0,
        "message": "Sample job from jobhooks: access denied to store /etc/ssl/certs",
        "completion_id": f"sample-{uuid.uuid4().hex[:12]}",
        "job_history_id": None,
    }
    clients = {key: overrides.pop(key) for key in ("client", "async_client") if key in overrides}
    data = {**base, **{canonical_key(key) or key: value for key, value in overrides.items()}}
    return JobCompleteContext.from_dict(data, **clients)
