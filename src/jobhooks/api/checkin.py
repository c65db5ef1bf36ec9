"""``POST /api/v1/job-completions``: an orchestrator reports a completed job.

This is the hot path, so it reads the body and parses it itself (no model
layer); the OpenAPI document still describes it through
:class:`CompletionReport`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from jobhooks.api.problems import ApiProblem, problem_response
from jobhooks.errors import StoreError
from jobhooks.sdk.context import parse_fields
from jobhooks.store.records import NewCompletion, PlannedRun

__all__ = ["MAX_BODY", "MAX_IDEMPOTENCY_KEY", "post_completion"]

MAX_BODY = 64 * 1024
MAX_IDEMPOTENCY_KEY = 200
_SET_BY_JOBHOOKS = ("completion_id", "source", "attempt")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiProblem(400, "Content-Length is not a number")
        if int(declared) > MAX_BODY:
            raise ApiProblem(413, f"the body is {declared} bytes; the limit is {MAX_BODY}")
        return await request.body()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiProblem(413, f"the body is over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> dict[str, Any]:
    if not body:
        raise ApiProblem(400, "the body is empty; send the completion as a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiProblem(422, f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _planned_runs(request: Request, job_type_id: Any) -> tuple[PlannedRun, ...]:
    runtime = request.app.state.runtime
    registry = runtime.live.registry
    cache: dict[Any, tuple[PlannedRun, ...]] = runtime.planned_cache(registry)
    planned = cache.get(job_type_id)
    if planned is None:
        grace = runtime.lease_grace
        planned = tuple(
            PlannedRun(h.name, h.policy.max_attempts, h.policy.timeout + grace)
            for h in registry.for_job_type(job_type_id)
        )
        cache[job_type_id] = planned
    return planned


async def post_completion(request: Request) -> Response:
    """Store a completion and its pending runs; answer 202 once committed."""
    runtime = request.app.state.runtime
    try:
        token = await runtime.tokens.require(request.headers.get("authorization"), "agent", "admin")
        content_type = request.headers.get("content-type", "application/json")
        if "json" not in content_type:
            raise ApiProblem(415, f"send the completion as application/json, not {content_type}")
        data = _parse(await _read_body(request))
        fields, problems = parse_fields(data)
        errors = [{"field": p.field, "message": p.message} for p in problems]
        errors += [
            {"field": name, "message": "is set by jobhooks, not by the reporter"}
            for name in _SET_BY_JOBHOOKS
            if name in fields
        ]
        if errors:
            count = len(errors)
            raise ApiProblem(
                422,
                f"{count} invalid field{'s' if count > 1 else ''}: "
                + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                errors,
            )
        if token.role == "agent" and token.agent_id != fields["agent_id"]:
            raise ApiProblem(
                403,
                f"this token reports for agent {token.agent_id}, not for {fields['agent_id']}",
                [{"field": "agent_id", "message": "does not match the token's agent"}],
            )
        key = request.headers.get("idempotency-key")
        if key is not None and (not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable()):
            raise ApiProblem(
                400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
            )
        fields["source"] = "check-in"
        planned = _planned_runs(request, fields["job_type_id"])
        receipt = await runtime.store.check_in(NewCompletion(fields, planned, key))
    except ApiProblem as problem:
        runtime.metrics.rejected.labels(str(problem.status)).inc()
        return problem_response(problem.status, problem.detail, problem.errors)
    except StoreError as exc:
        return problem_response(
            503, f"the completion was not stored: {exc}", None, {"Retry-After": "1"}
        )
    if receipt.duplicate:
        runtime.metrics.duplicates.inc()
    else:
        runtime.metrics.completions.labels(fields["job_result"].display, "check-in").inc()
    body = {
        "id": receipt.id,
        "duplicate": receipt.duplicate,
        "handler_runs": [
            {"id": run.id, "handler": run.handler, "status": run.status} for run in receipt.runs
        ],
    }
    return Response(json.dumps(body), status_code=202, media_type="application/json")
