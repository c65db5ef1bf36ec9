"""What operators read: completions, runs and their attempts, counts. Read-only."""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.store.ids import id_floor
from jobhooks.store.records import RunStatus
from jobhooks.store.stats import BY_TYPE
from jobhooks.store.tables import attempts, completion_stats, completions, job_types, runs

__all__ = [
    "CompletionFilter",
    "backlog",
    "completion_detail",
    "handler_counts",
    "job_type_cursor",
    "job_type_key",
    "job_type_order",
    "job_type_position",
    "job_type_rows",
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


JOB_TYPE_PAGE = 100
"""Job types in a page of ``GET /api/v1/job-types`` unless ``limit`` says otherwise."""
NAME_KEY_CHARS = 512
"""Job types are ordered by the first this many characters of their name, then by GUID.
A check-in's job type name is at most this long, so this is name order; the bound keeps
cursors short whatever a synced or configured name holds."""
MAX_JOB_TYPE_CURSOR = 36 + 1 + NAME_KEY_CHARS
"""The longest cursor :func:`job_type_cursor` makes: a GUID, a colon and a name key."""
JOB_TYPE_CURSOR_PATTERN = r"^[^:\x00]{0,36}:[^\x00]*$"
"""What every job type cursor looks like: the GUID (or nothing), a colon, then the name."""


def job_type_key(name: str | None, guid: str) -> tuple[str, str]:
    """Where a job type sorts in the catalog's pages: the first :data:`NAME_KEY_CHARS`
    characters of its name (``""`` for one without a name), then its GUID, both by code
    point, on either database."""
    return (name or "")[:NAME_KEY_CHARS], guid


def job_type_cursor(name: str | None, guid: str) -> str:
    """The cursor of the page after the job type ``name``/``guid``: ``GUID:name``, readable
    and exact whatever the name holds (it is a query parameter's text)."""
    key_name, key_guid = job_type_key(name, guid)
    return f"{key_guid}:{key_name}"


def job_type_position(cursor: str) -> tuple[str, str]:
    """The key (as :func:`job_type_key`) a cursor of :func:`job_type_cursor` stands for:
    any text of the form ``GUID:name`` is a place in the list.

    Raises ValueError for text of another form.
    """
    guid, colon, name = cursor.partition(":")
    if not colon or len(guid) > 36:
        raise ValueError("not a job type cursor")
    return name[:NAME_KEY_CHARS], guid


def job_type_order(connection: Connection) -> tuple[Any, Any]:
    """The SQL expressions of :func:`job_type_key` for ``job_types`` rows."""
    name: Any = func.substr(job_types.c.name, 1, NAME_KEY_CHARS)
    guid: Any = job_types.c.id
    if connection.dialect.name == "postgresql":
        # The database's collation may be linguistic; pages merge rows in code point
        # order (SQLite's and Python's), and a cursor must mean the same on every node.
        name, guid = name.collate("C"), guid.collate("C")
    return name, guid


def job_type_rows(
    connection: Connection,
    limit: int | None,
    after: tuple[str, str] | None,
    named: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Catalog rows in :func:`job_type_key` order, after the key ``after``, ``limit`` at
    most (every one when None), without counts.

    ``named`` is the configuration's ``[job_types]`` (GUID -> name): each row gets its
    ``config_name``, and a GUID without a row is merged in by its configured name with
    origin ``config``.
    """
    name_key, guid_key = job_type_order(connection)
    query = select(job_types).order_by(name_key, guid_key)
    if after is not None:
        query = query.where(
            or_(name_key > after[0], and_(name_key == after[0], guid_key > after[1]))
        )
    if limit is not None:
        query = query.limit(limit)
    rows = [
        {
            "id": row.id,
            "name": row.name,
            "origin": row.origin,
            "first_seen": row.first_seen,
            "config_name": named.get(row.id),
        }
        for row in connection.execute(query)
    ]
    if not named:
        return rows
    stored = set(
        connection.execute(
            select(job_types.c.id).where(job_types.c.id.in_(sorted(named)))
        ).scalars()
    )
    only_named = sorted(
        (job_type_key(name, guid), guid, name)
        for guid, name in named.items()
        if guid not in stored and (after is None or job_type_key(name, guid) > after)
    )
    configured = [
        {"id": guid, "name": name, "origin": "config", "first_seen": None, "config_name": name}
        for _key, guid, name in only_named[:limit]
    ]
    merged = heapq.merge(rows, configured, key=lambda row: job_type_key(row["name"], row["id"]))
    return list(merged)[:limit]


def list_job_types(
    engine: Engine,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
    named: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Job types known (seen, synced or named in the configuration) in
    :func:`job_type_rows` order, with the completions the dashboard's hourly summaries
    count for each: ``limit`` after ``after`` (every one in the catalog when ``limit`` is
    None, for name resolution)."""
    with engine.connect() as connection:
        rows = job_type_rows(connection, limit, after, named or {})
        s = completion_stats.c
        counts = select(s.subject, func.sum(s.count)).where(s.dimension == BY_TYPE)
        if limit is not None:
            counts = counts.where(s.subject.in_([row["id"] for row in rows]))
        totals = {
            subject: int(total) for subject, total in connection.execute(counts.group_by(s.subject))
        }
    for row in rows:
        row["completions"] = totals.get(row["id"], 0)
    return rows


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
