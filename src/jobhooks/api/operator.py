"""Operator endpoints: completions, runs, replay, handlers, job types, reload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from jobhooks.api.problems import ApiProblem
from jobhooks.sdk.enums import JobResult
from jobhooks.store import queries
from jobhooks.store.records import RunStatus
from jobhooks.store.tokens import TokenInfo

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["operators"])


async def reader(request: Request) -> TokenInfo:
    """An admin or viewer token."""
    tokens = request.app.state.runtime.tokens
    info: TokenInfo = await tokens.require(request.headers.get("authorization"), "admin", "viewer")
    return info


async def admin(request: Request) -> TokenInfo:
    """An admin token."""
    tokens = request.app.state.runtime.tokens
    info: TokenInfo = await tokens.require(request.headers.get("authorization"), "admin")
    return info


Reader = Annotated[TokenInfo, Depends(reader)]
Admin = Annotated[TokenInfo, Depends(admin)]
Limit = Annotated[int, Query(ge=1, le=queries.MAX_PAGE, description="Rows per page.")]


TIME: dict[str, Any] = {"max_length": 64, "json_schema_extra": {"format": "date-time"}}
"""A time in a query: ISO 8601 (RFC 3339), UTC unless it has an offset."""


def _epoch(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        # RFC 3339 allows a lower-case T and Z, which the standard library does not read.
        moment = datetime.fromisoformat(value.strip().upper())
    except ValueError:
        message = f"not an ISO 8601 time: {value[:40]!r} (expected e.g. 2026-11-22T10:00:00Z)"
        raise ApiProblem(422, f"{name}: {message}", [{"field": name, "message": message}]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _result(value: str | None) -> JobResult | None:
    if value is None:
        return None
    try:
        return JobResult.parse(value)
    except ValueError as exc:
        raise ApiProblem(
            422, f"result: {exc}", [{"field": "result", "message": str(exc)}]
        ) from None


RESULT_VALUES = [m.display for m in JobResult] + [str(m.value) for m in JobResult]
"""The documented spellings of a result filter (other spellings of a name are taken too)."""


@router.get("/job-completions", summary="List completions, newest first")
async def list_completions(
    request: Request,
    _token: Reader,
    agent_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    job_type_id: uuid.UUID | None = None,
    job_type: Annotated[str | None, Query(max_length=512)] = None,
    client_machine: Annotated[str | None, Query(max_length=512)] = None,
    result: Annotated[
        str | None,
        Query(
            max_length=32,
            description="Job result: a name (any spelling) or its number.",
            json_schema_extra={"enum": RESULT_VALUES},
        ),
    ] = None,
    since: Annotated[str | None, Query(description="Received at or after.", **TIME)] = None,
    until: Annotated[str | None, Query(description="Received before.", **TIME)] = None,
    before: Annotated[
        str | None, Query(max_length=36, description="Page: ids older than this.")
    ] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    where = queries.CompletionFilter(
        agent_id=agent_id,
        job_id=job_id,
        job_type_id=job_type_id,
        job_type=job_type,
        client_machine=client_machine,
        result=_result(result),
        since=_epoch("since", since),
        until=_epoch("until", until),
    )
    rows = await request.app.state.runtime.store.read(
        queries.list_completions, where, limit, before
    )
    return {"items": rows, "next": rows[-1]["id"] if len(rows) == limit else None}


@router.get("/job-completions/{completion_id}", summary="One completion with its handler runs")
async def show_completion(request: Request, _token: Reader, completion_id: str) -> dict[str, Any]:
    detail = None
    if len(completion_id) <= 36:
        detail = await request.app.state.runtime.store.read(
            queries.completion_detail, completion_id
        )
    if detail is None:
        raise ApiProblem(404, f"no completion {completion_id!r}")
    result: dict[str, Any] = detail
    return result


@router.get("/handler-runs", summary="List handler runs by status and handler")
async def list_runs(
    request: Request,
    _token: Reader,
    status: Annotated[
        str | None,
        Query(
            description="pending, running, succeeded, failed or dead",
            json_schema_extra={"enum": list(RunStatus.ALL)},
        ),
    ] = None,
    handler: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    if status is not None and status not in RunStatus.ALL:
        message = f"unknown status {status!r}; expected one of {', '.join(RunStatus.ALL)}"
        raise ApiProblem(422, message, [{"field": "status", "message": message}])
    rows = await request.app.state.runtime.store.read(
        queries.list_runs, status, handler, limit, before
    )
    return {"items": rows, "next": rows[-1]["id"] if len(rows) == limit else None}


@router.post("/handler-runs/{run_id}/replay", summary="Run a finished or failed run again")
async def replay_run(request: Request, _token: Admin, run_id: str) -> dict[str, Any]:
    runtime = request.app.state.runtime
    if len(run_id) > 36:
        raise ApiProblem(404, f"no handler run {run_id[:40]!r}")
    previous = await runtime.store.replay(run_id)
    if previous is None:
        raise ApiProblem(404, f"no handler run {run_id!r}")
    if previous in (RunStatus.PENDING, RunStatus.RUNNING):
        raise ApiProblem(
            409, f"run {run_id} is {previous}; only a finished or failed run can be replayed"
        )
    runtime.poke_worker()
    return {"id": run_id, "previous_status": previous, "status": RunStatus.PENDING}


@router.post("/handlers/{name}/replay-dead", summary="Run every dead run of a handler again")
async def replay_dead(request: Request, _token: Admin, name: str) -> dict[str, Any]:
    runtime = request.app.state.runtime
    count = await runtime.store.replay_dead(name)
    runtime.poke_worker()
    return {"handler": name, "replayed": count}


@router.get("/handlers", summary="Registered handlers with their run counts")
async def list_handlers(request: Request, _token: Reader) -> dict[str, Any]:
    runtime = request.app.state.runtime
    counts = await runtime.store.read(queries.handler_counts)
    live = runtime.live
    items = []
    for registered in live.registry:
        policy = registered.policy
        items.append(
            {
                "name": registered.name,
                "type": registered.type_name,
                "job_types": None if registered.runs_for_all else list(registered.job_type_labels),
                "all_job_types": registered.runs_for_all,
                "timeout": policy.timeout,
                "max_attempts": policy.max_attempts,
                "backoff": policy.backoff,
                "isolation": policy.isolation,
                "runs": counts.get(registered.name, dict.fromkeys(RunStatus.ALL, 0)),
            }
        )
    status = live.last_reload
    return {
        "items": items,
        "unregistered_with_runs": sorted(set(counts) - {h.name for h in live.registry}),
        "last_reload": {
            "at": status.at,
            "applied": status.applied,
            "problems": list(status.problems),
        },
    }


@router.get("/job-types", summary="Job types seen, synced or named in the configuration")
async def list_job_types(
    request: Request,
    _token: Reader,
    before: Annotated[
        str | None,
        Query(
            max_length=queries.MAX_JOB_TYPE_CURSOR,
            pattern=queries.JOB_TYPE_CURSOR_PATTERN,
            description="Page: the `next` of the previous page (`GUID:name`).",
        ),
    ] = None,
    limit: Limit = queries.JOB_TYPE_PAGE,
) -> dict[str, Any]:
    """Job types by name, then GUID (names compared by code point, on their first 512
    characters), one page at a time: `next` is the cursor of the following page, null on
    the last. A job type named only in the configuration's `[job_types]` takes its place
    by that name, with origin `config`; `config_name` is the name the configuration gives
    a job type. `completions` counts each one's completions over the retention period."""
    after = None
    if before is not None:
        try:
            after = queries.job_type_position(before)
        except ValueError:
            message = "not a cursor of this list; pass the next of a previous page"
            raise ApiProblem(
                422, f"before: {message}", [{"field": "before", "message": message}]
            ) from None
    runtime = request.app.state.runtime
    named = {str(guid): name for name, guid in runtime.live.config.job_types.items()}
    rows = await runtime.store.read(queries.list_job_types, limit + 1, after, named)
    items = rows[:limit]
    following = None
    if len(rows) > limit:
        following = queries.job_type_cursor(items[-1]["name"], items[-1]["id"])
    return {"items": items, "next": following}


@router.post("/admin/reload", summary="Reload the configuration (as SIGHUP does)")
async def reload(request: Request, _token: Admin) -> dict[str, Any]:
    runtime = request.app.state.runtime
    status = runtime.reload()
    if not status.applied:
        raise ApiProblem(
            422,
            "the configuration was refused; the running one stays in force",
            [{"field": "config", "message": problem} for problem in status.problems],
        )
    return {"applied": True, "at": status.at, "handlers": len(runtime.live.registry)}
