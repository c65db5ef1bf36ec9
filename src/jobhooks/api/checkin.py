"""``POST /api/v1/job-completions``: an orchestrator reports a completed job.

This is the hot path. :class:`CheckinEndpoint` answers it as a bare ASGI app
in front of the framework (no request objects, no middleware stack) and
parses the body itself; the OpenAPI document still describes it through
:class:`jobhooks.api.schemas.CompletionReport`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from jobhooks.api.guard import MAX_BODY
from jobhooks.api.problems import ApiProblem, problem_body
from jobhooks.errors import StoreError
from jobhooks.sdk.context import parse_fields
from jobhooks.store.records import NewCompletion, PlannedRun

__all__ = ["MAX_IDEMPOTENCY_KEY", "PATH", "CheckinEndpoint", "check_in", "is_json"]

logger = logging.getLogger("jobhooks.api")

PATH = "/api/v1/job-completions"
MAX_IDEMPOTENCY_KEY = 200
ALLOWED = "GET, POST"
"""The methods of :data:`PATH`: POST reports a completion, GET lists them (operators)."""
_SET_BY_JOBHOOKS = ("completion_id", "source", "attempt")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_IDEMPOTENCY_KEY and all(" " <= ch <= "~" for ch in key)


def is_json(content_type: str) -> bool:
    """True for ``application/json`` and ``application/<anything>+json``, with parameters."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _parse(body: bytes) -> dict[str, Any]:
    if not body:
        raise ApiProblem(400, "the body is empty; send the completion as a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiProblem(
            400, "the body is not a completion: its JSON is nested too deeply"
        ) from None
    if not isinstance(data, dict):
        raise ApiProblem(422, f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _planned_runs(runtime: Any, job_type_id: Any) -> tuple[PlannedRun, ...]:
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


async def check_in(
    runtime: Any, authorization: str | None, idempotency_key: str | None, body: bytes
) -> tuple[int, bytes]:
    """Validate, authorise and store one report; returns (HTTP status, JSON body)."""
    try:
        token = await runtime.tokens.require(authorization, "agent", "admin")
        fields, problems = parse_fields(_parse(body))
        errors = [{"field": p.field, "message": p.message} for p in problems]
        errors += [
            {"field": name, "message": "is set by jobhooks, not by the reporter"}
            for name in _SET_BY_JOBHOOKS
            if name in fields
        ]
        # SQLite would keep a NUL character in text; PostgreSQL cannot store one.
        errors += [
            {"field": name, "message": "contains a NUL character (\\u0000), which cannot be stored"}
            for name, value in fields.items()
            if isinstance(value, str) and "\x00" in value
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
        key = idempotency_key
        if key is not None and not _valid_key(key):
            raise ApiProblem(
                400,
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            )
        fields["source"] = "check-in"
        planned = _planned_runs(runtime, fields["job_type_id"])
        receipt = await runtime.store.check_in(NewCompletion(fields, planned, key))
    except ApiProblem as problem:
        runtime.metrics.rejected.labels(str(problem.status)).inc()
        return problem.status, problem_body(problem.status, problem.detail, problem.errors)
    except StoreError as exc:
        # The store logs each change of its state once; a line per refused report would
        # drown the log during an outage.
        logger.debug("a completion could not be stored: %s", exc)
        runtime.metrics.rejected.labels("503").inc()
        return 503, problem_body(503, f"the completion was not stored: {exc}")
    if receipt.duplicate:
        runtime.metrics.duplicates.inc()
    else:
        runtime.metrics.completions.labels(fields["job_result"].display, "check-in").inc()
    answer = {
        "id": receipt.id,
        "duplicate": receipt.duplicate,
        "handler_runs": [
            {"id": run.id, "handler": run.handler, "status": run.status} for run in receipt.runs
        ],
    }
    return 202, json.dumps(answer).encode()


_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", b"application/problem+json")]


class CheckinEndpoint:
    """An ASGI app that answers the check-in itself and passes everything else on."""

    def __init__(self, runtime: Any, app: ASGIApp) -> None:
        self.runtime = runtime
        self.app = app

    def __getattr__(self, name: str) -> Any:
        # The wrapped framework app's attributes (state, openapi, ...) stay reachable.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            body = problem_body(405, f"{scope['method'][:20]} is not allowed here; use {ALLOWED}")
            await self._send(send, 405, body, [(b"allow", ALLOWED.encode())])
            return
        authorization = key = declared = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        status, body = await self._answer(receive, authorization, key, declared, content_type)
        await self._send(send, status, body)

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = _JSON if status < 400 else _PROBLEM
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, *(extra or ()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self,
        receive: Receive,
        authorization: str | None,
        key: str | None,
        declared: bytes | None,
        content_type: str | None,
    ) -> tuple[int, bytes]:
        if declared is not None:
            if not declared.isdigit():
                return 400, problem_body(400, "Content-Length is not a number")
            if int(declared) > MAX_BODY:
                return 413, problem_body(
                    413, f"the body is {int(declared)} bytes; the limit is {MAX_BODY}"
                )
        if content_type is not None and not is_json(content_type):
            return 415, problem_body(
                415, f"send the completion as application/json, not {content_type[:100]}"
            )
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, problem_body(400, "the client went away before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return 413, problem_body(413, f"the body is over the limit of {MAX_BODY} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            return await check_in(self.runtime, authorization, key, body)
        except Exception:
            logger.exception("unexpected error in the check-in")
            return 500, problem_body(500, "unexpected error; the completion was not stored")
