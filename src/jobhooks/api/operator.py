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


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
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
        str | None, Query(max_length=32, description="Job result name or number.")
    ] = None,
    since: datetime | None = None,
    until: datetime | None = None,
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
        since=_epoch(since),
        until=_epoch(until),
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
        str | None, Query(description="pending, running, succeeded, failed or dead")
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
async def list_job_types(request: Request, _token: Reader) -> dict[str, Any]:
    runtime = request.app.state.runtime
    rows = await runtime.store.read(queries.list_job_types)
    named = {str(guid): name for name, guid in runtime.live.config.job_types.items()}
    for row in rows:
        row["config_name"] = named.pop(row["id"], None)
    rows += [
        {
            "id": guid,
            "name": name,
            "origin": "config",
            "first_seen": None,
            "completions": 0,
            "config_name": name,
        }
        for guid, name in named.items()
    ]
    return {"items": rows}


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
