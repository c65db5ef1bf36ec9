"""``POST /api/v1/job-completions``: an orchestrator reports a completed job.

This is the hot path. :class:`CheckinEndpoint` answers it as a bare ASGI app
in front of the framework (no request objects, no middleware stack) and
parses the body itself; the OpenAPI document still describes it through
:class:`jobhooks.api.schemas.CompletionReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from jobhooks.api.auth import require
from jobhooks.api.guard import (
    BodyRefused,
    check_length,
    read_body,
    repeated_header,
    repeated_problem,
)
from jobhooks.api.problems import ApiProblem, problem_body
from jobhooks.errors import CommitUnconfirmed, ReportRejected, StoreError
from jobhooks.service.runtime import Runtime

__all__ = ["ALLOWED", "PATH", "CheckinEndpoint", "check_in", "is_json"]

logger = logging.getLogger("jobhooks.api")

PATH = "/api/v1/job-completions"
ALLOWED = "GET, HEAD, POST"
"""The methods of :data:`PATH`: POST reports a completion, GET (and HEAD) lists them
(operators)."""
_READS = ("GET", "HEAD")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_json(content_type: str) -> bool:
    """True for ``application/json`` and ``application/<subtype>+json``, with parameters."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return True
    subtype = kind.removeprefix("application/")
    return subtype != kind and subtype.endswith("+json") and len(subtype) > len("+json")


_STATUS = {"malformed": 400, "invalid": 422, "forbidden": 403}


async def check_in(
    runtime: Runtime, authorization: str | None, idempotency_key: str | None, body: bytes
) -> tuple[int, bytes]:
    """Authorise one report and hand it to intake; returns (HTTP status, JSON body)."""
    try:
        token = await require(runtime.tokens, authorization, "agent", "admin")
        completion = runtime.intake.completion(body, token, idempotency_key)
        receipt = await runtime.store.check_in(completion)
    except ApiProblem as problem:
        runtime.metrics.rejected.labels(str(problem.status)).inc()
        return problem.status, problem_body(problem.status, problem.detail, problem.errors)
    except ReportRejected as rejected:
        status = _STATUS[rejected.reason]
        runtime.metrics.rejected.labels(str(status)).inc()
        errors = [{"field": p.field, "message": p.message} for p in rejected.problems]
        return status, problem_body(status, str(rejected), errors or None)
    except CommitUnconfirmed as exc:
        logger.debug("a completion could not be confirmed: %s", exc)
        runtime.metrics.rejected.labels("503").inc()
        return 503, problem_body(
            503,
            f"{exc}; send it again with the same Idempotency-Key (or job_history_id) and "
            "it is stored once",
        )
    except StoreError as exc:
        # The store logs each change of its state once; a line per refused report would
        # drown the log during an outage.
        logger.debug("a completion could not be stored: %s", exc)
        runtime.metrics.rejected.labels("503").inc()
        return 503, problem_body(503, f"the completion was not stored: {exc}")
    if receipt.duplicate:
        runtime.metrics.duplicates.inc()
    else:
        result = completion.fields["job_result"].display
        runtime.metrics.count_completions(result, "check-in")
    answer = {
        "id": receipt.id,
        "duplicate": receipt.duplicate,
        "handler_runs": [
            {
                "id": run.id,
                "handler": run.handler,
                "status": run.status,
                "trigger": run.trigger.to_dict() if run.trigger is not None else None,
                **({"closes_at": run.closes_at} if run.closes_at is not None else {}),
            }
            for run in receipt.runs
        ],
    }
    return 202, orjson.dumps(answer)


_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", b"application/problem+json")]


class CheckinEndpoint:
    """An ASGI app that answers the check-in itself and passes everything else on."""

    def __init__(self, runtime: Runtime, app: ASGIApp) -> None:
        self.runtime = runtime
        self.app = app

    def __getattr__(self, name: str) -> Any:
        # The wrapped framework app's attributes (state, openapi, ...) stay reachable.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            body = problem_body(405, f"{scope['method'][:20]} is not allowed here; use {ALLOWED}")
            await self._send(send, 405, body, [(b"allow", ALLOWED.encode())])
            return
        authorization = key = declared = content_type = None
        twice = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                twice |= authorization is not None
                authorization = value.decode("latin-1")
            elif name == b"idempotency-key":
                twice |= key is not None
                key = value.decode("latin-1")
            elif name == b"content-length":
                twice |= declared is not None
                declared = value
            elif name == b"content-type":
                twice |= content_type is not None
                content_type = value.decode("latin-1")
        if twice and (repeated := repeated_header(scope["headers"])) is not None:
            await self._send(send, 400, problem_body(400, repeated_problem(repeated)))
            return
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
        if content_type is None or not is_json(content_type):
            given = "no Content-Type" if content_type is None else content_type[:100]
            return 415, problem_body(
                415, f"send the completion as application/json (Content-Type), not {given}"
            )
        try:
            check_length(declared)
            body = await read_body(receive)
        except BodyRefused as refused:
            return refused.status, problem_body(refused.status, refused.detail)
        try:
            return await check_in(self.runtime, authorization, key, body)
        except Exception:
            logger.exception("unexpected error in the check-in")
            return 500, problem_body(500, "unexpected error; the completion was not stored")
