"""Completion reports as orchestrators post them, and the job types the tests use."""

from __future__ import annotations

import uuid
from typing import Any

AGENT_A = uuid.UUID("3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21")
AGENT_B = uuid.UUID("9d4f2b7a-1c3e-4f5a-8b6c-7d8e9f0a1b2c")

INVENTORY = uuid.UUID("7b6bbc1b-d802-4b09-bec9-f5c221083130")
"""The first job type GUID of Keyfactor Command's sample registration (it names neither; the
fake platform's catalog in ``support.keyfactor`` makes these two an inventory and a
management job type, and the tests follow it)."""
MANAGEMENT = uuid.UUID("44340a94-9b99-410d-8011-598fb176c3c5")
FLAKY = uuid.UUID("0a1e5c2d-0000-4000-8000-00000000f1a4")
GATED_ONE = uuid.UUID("0a1e5c2d-0000-4000-8000-000000000001")
GATED_MANY = uuid.UUID("0a1e5c2d-0000-4000-8000-000000000002")
DOOMED = uuid.UUID("0a1e5c2d-0000-4000-8000-0000000000dd")
BAD = uuid.UUID("0a1e5c2d-0000-4000-8000-0000000000bd")


def report(agent_id: uuid.UUID = AGENT_A, **fields: Any) -> dict[str, Any]:
    """A failed inventory job on ``agent_id``, as JSON; ``fields`` override or add keys.

    A value of ``None`` for a field given in ``fields`` removes the key
    (``current_retry_count=None`` omits the count).
    """
    body: dict[str, Any] = {
        "agent_id": str(agent_id),
        "username": "EXAMPLE\\orch01",
        "client_machine": "orch01.example.com",
        "job_id": str(uuid.uuid4()),
        "job_type": "Inventory",
        "job_type_id": str(INVENTORY),
        "operation_type": "Inventory",
        "job_result": "Failure",
        "certificate_id": None,
        "request_timestamp": "2026-11-22T10:00:00Z",
        "current_retry_count": 0,
        "message": "Access denied to store /etc/ssl",
    }
    for key, value in fields.items():
        if value is None and key in body:
            del body[key]
        else:
            body[key] = str(value) if isinstance(value, uuid.UUID) else value
    return body


def new_completion(
    *handlers: str,
    key: str | None = None,
    max_attempts: int = 3,
    lease: float = 10.0,
    agent_id: uuid.UUID = AGENT_A,
    rules: dict[str, Any] | None = None,
    digests: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """A parsed report ready for the store (``NewCompletion``), with one planned run per
    handler name (``rules`` gives a handler its ``Rule``, ``digests`` its ``DigestPlan``)."""
    from jobhooks.sdk.context import parse_fields
    from jobhooks.store.records import NewCompletion, PlannedRun

    parsed, problems = parse_fields(report(agent_id, **fields))
    assert not problems, problems
    parsed["source"] = "check-in"
    rules = rules or {}
    digests = digests or {}
    planned = tuple(
        PlannedRun(name, max_attempts, lease, rules.get(name), digests.get(name))
        for name in handlers
    )
    return NewCompletion(parsed, planned, key)
