"""What operators read: completions, runs and their attempts, counts. Read-only."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, select

from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.store.ids import id_floor
from jobhooks.store.records import RunStatus
from jobhooks.store.tables import attempts, completions, job_types, runs

__all__ = [
    "CompletionFilter",
    "backlog",
    "completion_detail",
    "handler_counts",
    "list_completions",
    "list_job_types",
    "list_runs",
]

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class CompletionFilter:
    """Filters of the completions list; every one is optional."""

    agent_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    job_type_id: uuid.UUID | None = None
    job_type: str | None = None
    client_machine: str | None = None
    result: JobResult | None = None
    since: float | None = None
    until: float | None = None


def completion_json(row: Any) -> dict[str, Any]:
    """A completions row as the API shows it."""
    return {
        "id": row.id,
        "received_at": row.received_at,
        "source": row.source,
        "agent_id": row.agent_id,
        "username": row.username,
        "client_machine": row.client_machine,
        "job_id": row.job_id,
        "job_type": row.job_type,
        "job_type_id": row.job_type_id,
        "operation_type": OperationType(row.operation_type).display,
        "job_result": JobResult(row.job_result).display,
        "certificate_id": row.certificate_id,
        "request_timestamp": row.request_timestamp,
        "current_retry_count": row.current_retry_count,
        "retry_count_computed": bool(row.retry_count_computed),
        "message": row.message,
        "job_history_id": row.job_history_id,
    }


def run_json(row: Any) -> dict[str, Any]:
    """A handler_runs row as the API shows it."""
    return {
        "id": row.id,
        "completion_id": row.completion_id,
        "handler": row.handler,
        "status": RunStatus.shown(row.status, row.worker),
        "attempts": row.attempts,
        "total_attempts": row.total_attempts,
        "max_attempts": row.max_attempts,
        "due_at": row.due_at if row.status in RunStatus.OPEN and row.worker is None else None,
        "lease_until": row.lease_until if row.worker is not None else None,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration": row.duration,
        "last_error": row.last_error,
    }


def list_completions(
    engine: Engine, where: CompletionFilter, limit: int = 50, before: str | None = None
) -> list[dict[str, Any]]:
    """Completions newest first, ``limit`` at most, older than the ``before`` id if given."""
    query = select(completions).order_by(completions.c.id.desc()).limit(min(limit, MAX_PAGE))
    c = completions.c
    conditions: list[tuple[Any, Callable[[Any], Any]]] = [
        (where.agent_id, lambda v: c.agent_id == str(v)),
        (where.job_id, lambda v: c.job_id == str(v)),
        (where.job_type_id, lambda v: c.job_type_id == str(v)),
        (where.job_type, lambda v: c.job_type == v),
        (where.client_machine, lambda v: c.client_machine == v),
        (where.result, lambda v: c.job_result == int(v)),
        (where.since, lambda v: c.id >= id_floor(v)),
        (where.until, lambda v: c.id < id_floor(v)),
        (before, lambda v: c.id < v),
    ]
    for value, condition in conditions:
        if value is not None:
            query = query.where(condition(value))
    with engine.connect() as connection:
        return [completion_json(row) for row in connection.execute(query)]


def completion_detail(engine: Engine, completion_id: str) -> dict[str, Any] | None:
    """One completion with its runs, each with its attempts."""
    with engine.connect() as connection:
        row = connection.execute(
            select(completions).where(completions.c.id == completion_id)
        ).first()
        if row is None:
            return None
        run_rows = connection.execute(
            select(runs).where(runs.c.completion_id == completion_id).order_by(runs.c.id)
        ).all()
        attempt_rows = connection.execute(
            select(attempts)
            .where(attempts.c.run_id.in_([r.id for r in run_rows]))
            .order_by(attempts.c.run_id, attempts.c.number)
        ).all()
    detail = completion_json(row)
    by_run: dict[str, list[dict[str, Any]]] = {r.id: [] for r in run_rows}
    for attempt in attempt_rows:
        by_run[attempt.run_id].append(
            {
                "number": attempt.number,
                "worker": attempt.worker,
                "started_at": attempt.started_at,
                "finished_at": attempt.finished_at,
                "duration": attempt.duration,
                "outcome": attempt.outcome,
                "error": attempt.error,
                "traceback": attempt.traceback,
            }
        )
    detail["handler_runs"] = [{**run_json(r), "attempt_history": by_run[r.id]} for r in run_rows]
    return detail


def list_runs(
    engine: Engine,
    status: str | None = None,
    handler: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """Handler runs newest first, filtered by status and handler."""
    query = select(runs).order_by(runs.c.id.desc()).limit(min(limit, MAX_PAGE))
    if status is not None:
        query = query.where(_shown_status(status))
    if handler is not None:
        query = query.where(runs.c.handler == handler)
    if before is not None:
        query = query.where(runs.c.id < before)
    with engine.connect() as connection:
        return [run_json(row) for row in connection.execute(query)]


def _shown_status(status: str) -> Any:
    if status == RunStatus.RUNNING:
        return and_(runs.c.status.in_(RunStatus.OPEN), runs.c.worker.isnot(None))
    if status in RunStatus.OPEN:
        return and_(runs.c.status == status, runs.c.worker.is_(None))
    return runs.c.status == status


def run_exists(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """One run, or None."""
    with engine.connect() as connection:
        row = connection.execute(select(runs).where(runs.c.id == run_id)).first()
    return run_json(row) if row is not None else None


def handler_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Run counts by handler and status."""
    held = runs.c.worker.isnot(None)
    query = select(runs.c.handler, runs.c.status, held.label("held"), func.count()).group_by(
        runs.c.handler, runs.c.status, held
    )
    counts: dict[str, dict[str, int]] = {}
    with engine.connect() as connection:
        for handler, status, is_held, count in connection.execute(query):
            shown = RunStatus.shown(status, "held" if is_held else None)
            counts.setdefault(handler, dict.fromkeys(RunStatus.ALL, 0))[shown] += count
    return counts


def list_job_types(engine: Engine) -> list[dict[str, Any]]:
    """Every job type known (seen, synced or named in the config), with completion counts."""
    counts = (
        select(completions.c.job_type_id, func.count().label("completions"))
        .group_by(completions.c.job_type_id)
        .subquery()
    )
    query = (
        select(job_types, func.coalesce(counts.c.completions, 0).label("completions"))
        .select_from(job_types.outerjoin(counts, counts.c.job_type_id == job_types.c.id))
        .order_by(job_types.c.name)
    )
    with engine.connect() as connection:
        return [
            {
                "id": row.id,
                "name": row.name,
                "origin": row.origin,
                "first_seen": row.first_seen,
                "completions": row.completions,
            }
            for row in connection.execute(query)
        ]


def backlog(engine: Engine, now: float) -> tuple[int, float]:
    """How many runs wait (pending or failed awaiting retry) and the age of the oldest."""
    query = select(func.count(), func.min(runs.c.created_at)).where(
        runs.c.status.in_(RunStatus.OPEN), runs.c.worker.is_(None)
    )
    with engine.connect() as connection:
        count, oldest = connection.execute(query).one()
    return int(count), (now - oldest) if oldest is not None else 0.0


def completions_by_result(engine: Engine) -> dict[str, int]:
    """How many completions are stored, by job result name."""
    query = select(completions.c.job_result, func.count()).group_by(completions.c.job_result)
    with engine.connect() as connection:
        return {JobResult(result).display: count for result, count in connection.execute(query)}


def dispatch_latencies(engine: Engine) -> list[float]:
    """Seconds from each run's commit to the start of its first attempt."""
    query = select(attempts.c.started_at - runs.c.created_at).where(
        attempts.c.run_id == runs.c.id, attempts.c.number == 1
    )
    with engine.connect() as connection:
        return [max(0.0, value) for (value,) in connection.execute(query)]
