"""Operator endpoints: completions, runs, replay, handlers, job types, reload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from jobhooks.api.auth import require
from jobhooks.api.problems import ApiProblem
from jobhooks.registry import Registry
from jobhooks.sdk.enums import JobResult
from jobhooks.service.runtime import Runtime
from jobhooks.store import catalog
from jobhooks.store.ids import stored_id
from jobhooks.store.reads import MAX_PAGE, CompletionFilter
from jobhooks.store.records import RunStatus
from jobhooks.store.tokens import TokenInfo

__all__ = ["router", "runtime_of"]

router = APIRouter(prefix="/api/v1", tags=["operators"])

JOB_TYPE_PAGE = 100
"""Job types in a page unless ``limit`` says otherwise."""


def runtime_of(request: Request) -> Runtime:
    """The runtime the app serves (set by the app factory)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def reader(request: Request) -> TokenInfo:
    """An admin or viewer token."""
    return await require(
        runtime_of(request).tokens, request.headers.get("authorization"), "admin", "viewer"
    )


async def admin(request: Request) -> TokenInfo:
    """An admin token."""
    return await require(runtime_of(request).tokens, request.headers.get("authorization"), "admin")


Reader = Annotated[TokenInfo, Depends(reader)]
Admin = Annotated[TokenInfo, Depends(admin)]
Current = Annotated[Runtime, Depends(runtime_of)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")]
Before = Annotated[
    str | None,
    Query(
        max_length=36,
        pattern=r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$",
        description="Page: the id of the last row of the previous page (empty: the first).",
    ),
]


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
    runtime: Current,
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
    before: Before = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    where = CompletionFilter(
        agent_id=agent_id,
        job_id=job_id,
        job_type_id=job_type_id,
        job_type=job_type,
        client_machine=client_machine,
        result=_result(result),
        since=_epoch("since", since),
        until=_epoch("until", until),
    )
    page = await runtime.store.reads.completions(where, limit, before or None)  # "": first page
    return page.as_json()


@router.get("/job-completions/{completion_id}", summary="One completion with its handler runs")
async def show_completion(runtime: Current, _token: Reader, completion_id: str) -> dict[str, Any]:
    detail = None
    if len(completion_id) <= 36:
        detail = await runtime.store.reads.completion(completion_id)
    if detail is None:
        raise ApiProblem(404, f"no completion {completion_id[:40]!r}")
    return detail.as_json()


@router.get("/handler-runs", summary="List handler runs by status and handler")
async def list_runs(
    runtime: Current,
    _token: Reader,
    status: Annotated[
        str | None,
        Query(
            description="pending, running, succeeded, failed, dead or held",
            json_schema_extra={"enum": list(RunStatus.ALL)},
        ),
    ] = None,
    handler: Annotated[str | None, Query(max_length=200)] = None,
    before: Before = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    if status is not None and status not in RunStatus.ALL:
        message = f"unknown status {status!r}; expected one of {', '.join(RunStatus.ALL)}"
        raise ApiProblem(422, message, [{"field": "status", "message": message}])
    registered = [h.name for h in runtime.live.registry]
    page = await runtime.store.reads.runs(status, handler, registered, limit, before or None)
    return page.as_json()


@router.post("/handler-runs/{run_id}/replay", summary="Run a finished or failed run again")
async def replay_run(runtime: Current, _token: Admin, run_id: str) -> dict[str, Any]:
    if len(run_id) > 36:
        raise ApiProblem(404, f"no handler run {run_id[:40]!r}")
    previous = await runtime.store.replay(run_id)
    if previous is None:
        raise ApiProblem(404, f"no handler run {run_id!r}")
    if previous == RunStatus.HELD:
        raise ApiProblem(
            409,
            f"run {run_id} is held: its registration is quarantined, removed or disabled, and "
            "the run starts by itself once a reload makes a registration of that name valid",
        )
    if previous in RunStatus.NOT_REPLAYABLE:
        raise ApiProblem(
            409, f"run {run_id} is {previous}; only a finished or failed run can be replayed"
        )
    runtime.poke_worker()
    return {"id": stored_id(run_id), "previous_status": previous, "status": RunStatus.PENDING}


@router.post("/handlers/{name}/replay-dead", summary="Run every dead run of a handler again")
async def replay_dead(runtime: Current, _token: Admin, name: str) -> dict[str, Any]:
    count = await runtime.store.replay_dead(name)
    if not count and runtime.live.registry.get(name) is None:
        raise ApiProblem(
            404, f"no handler {name[:200]!r}: none is registered, and none has dead runs"
        )
    runtime.poke_worker()
    return {"handler": name, "replayed": count}


@router.get("/handlers", summary="Registered handlers with their runs now and over the last day")
async def list_handlers(runtime: Current, _token: Reader) -> dict[str, Any]:
    """Each registration with its delivery policy and its runs: ``runs`` counts them by
    status now (``succeeded`` over the last day), ``success_rate`` is the last day's, and
    ``last_error`` the newest failed or dead run's. Handlers no longer registered that
    still have open or dead runs are listed in ``unregistered_with_runs``."""
    live = runtime.live
    registered = {h.name: h for h in live.registry}
    health = await runtime.store.reads.handlers(list(registered))
    items = []
    for item in health:
        handler = registered.get(item.name)
        if handler is None:
            continue
        policy = handler.policy
        items.append(
            {
                "name": handler.name,
                "type": handler.type_name,
                "job_types": None if handler.runs_for_all else list(handler.job_type_labels),
                "all_job_types": handler.runs_for_all,
                "timeout": policy.timeout,
                "max_attempts": policy.max_attempts,
                "backoff": policy.backoff,
                "isolation": policy.isolation,
                "when": list(handler.when.triggers),
                "streak": handler.when.streak
                if "failure-streak" in handler.when.triggers
                else None,
                "repeat_every": handler.when.repeat_every,
                "group_by": list(handler.grouping.fields) if handler.grouping else None,
                "group_wait": handler.grouping.wait if handler.grouping else None,
                "group_max": handler.grouping.most if handler.grouping else None,
                "runs": item.now,
                "success_rate": item.success_rate,
                "last_error": item.last_error.as_json() if item.last_error else None,
            }
        )
    status = live.last_reload
    return {
        "items": items,
        "unregistered_with_runs": [h.name for h in health if h.name not in registered],
        "last_reload": {
            "at": status.at,
            "applied": status.applied,
            "problems": list(status.problems),
        },
    }


@router.get("/job-types", summary="Job types seen, synced or named in the configuration")
async def list_job_types(
    runtime: Current,
    _token: Reader,
    before: Annotated[
        str | None,
        Query(
            max_length=catalog.MAX_CURSOR,
            pattern=catalog.CURSOR_PATTERN,
            description="Page: the `next` of the previous page (`GUID:name`).",
        ),
    ] = None,
    limit: Limit = JOB_TYPE_PAGE,
) -> dict[str, Any]:
    """Job types by name, then GUID (names compared by code point, on their first 512
    characters), one page at a time: `next` is the cursor of the following page, null on
    the last. A job type named only in the configuration's `[job_types]` takes its place
    by that name, with origin `config`; `config_name` is the name the configuration gives
    a job type. `completions` and `failures` count each one's completions over the
    retention period, `last_day` over the last day."""
    after = None
    if before is not None:
        try:
            after = catalog.page_position(before)
        except ValueError as exc:
            raise ApiProblem(
                422, f"before: {exc}", [{"field": "before", "message": str(exc)}]
            ) from None
    named = {str(guid): name for name, guid in runtime.live.config.job_types.items()}
    page = await runtime.store.reads.job_types(limit, after, named)
    return page.as_json()


@router.post("/admin/reload", summary="Reload the configuration (as SIGHUP does)")
async def reload(runtime: Current, _token: Admin) -> dict[str, Any]:
    status = await runtime.reload()
    if not status.applied:
        raise ApiProblem(
            422,
            "the configuration was refused; the running one stays in force",
            [{"field": "config", "message": problem} for problem in status.problems],
        )
    registry = runtime.live.registry
    return {
        "applied": True,
        "at": status.at,
        "handlers": len(registry),
        "registrations": registration_problems(registry),
    }


def registration_problems(registry: Registry) -> list[dict[str, Any]]:
    """The registrations with problems, as ``/readyz`` and a reload report them: each
    ``quarantined`` (``holds_runs``: its completions get held runs) or ``kept`` (a
    reload found problems; its last good version runs)."""
    return [
        {
            "name": entry.name,
            "state": "kept" if entry.kept else "quarantined",
            "holds_runs": entry.holds and not entry.kept,
            "problems": list(entry.problems),
        }
        for entry in registry.problems
    ]
