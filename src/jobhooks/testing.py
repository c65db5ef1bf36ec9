"""Helpers for testing handlers: a realistic sample context, and a handler configured from
its properties as a registration configures it."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from jobhooks.errors import ConfigError
from jobhooks.registry.properties import coerce_properties, configured_handler
from jobhooks.sdk.context import JobCompleteContext, canonical_key
from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.sdk.handler import JobCompleteHandler

__all__ = ["SAMPLE_AGENT_ID", "make_handler", "sample_context", "sample_digest"]

SAMPLE_AGENT_ID = uuid.UUID("3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21")

H = TypeVar("H", bound=JobCompleteHandler)


def make_handler(handler_class: type[H], /, *, name: str = "test", **properties: Any) -> H:
    """A ``handler_class`` with ``properties`` set, as a ``[[handlers]]`` registration with
    those ``[handlers.properties]`` would make it: keys in snake_case or PascalCase, values
    coerced to the declared types (``"2"`` to 2, ``"a@x,b@y"`` to a list, ``"env:NAME"`` to
    a :class:`~jobhooks.Secret`), defaults filled in, then ``setup()`` called.

    Raises :class:`~jobhooks.errors.ConfigError` naming each property that is missing,
    unknown or of the wrong type; whatever ``setup()`` raises propagates as it is.
    """
    values, problems = coerce_properties(handler_class, properties)
    if problems:
        raise ConfigError(
            [f"property {key}: {problem}" for key, problem in problems],
            source=handler_class.__name__,
        )
    return configured_handler(handler_class, values, name)


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


def sample_digest(*members: JobCompleteContext) -> JobCompleteContext:
    """The context a handler gets for a digest of ``members`` (oldest first): the newest
    member's fields, with ``group`` all of them (see ``group_by``)."""
    if not members:
        raise ValueError("a digest holds at least one completion")
    return dataclasses.replace(members[-1], group=tuple(members))
