"""What the dashboard reads. Read-only, the same SQL on SQLite and PostgreSQL.

Every query here stays fast with millions of completions: counts come from
the time-bucketed ``completion_stats`` and from ``agent_summary``, runs are
found through the ``(status, handler, id)`` index one range at a time, and a
filtered list of completions scans a bounded window of the newest ids.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, exists, func, select

from jobhooks.sdk.enums import JobResult
from jobhooks.store.ids import id_floor
from jobhooks.store.queries import (
    CompletionFilter,
    backlog,
    completion_json,
    job_type_key,
    job_type_order,
    job_type_rows,
    run_json,
)
from jobhooks.store.records import RunStatus
from jobhooks.store.stats import ALL, BY_AGENT, BY_TYPE
from jobhooks.store.tables import agent_summary, completion_stats, completions, job_types, runs

__all__ = [
    "RANGES",
    "SCAN_WINDOW",
    "CompletionPage",
    "RunPage",
    "agents",
    "filter_choices",
    "handler_health",
    "job_type_catalog",
    "job_type_names",
    "list_completions",
    "list_runs",
    "overview",
    "run_handlers",
]

RANGES: dict[str, tuple[int, int]] = {"1h": (3600, 60), "24h": (86400, 900), "7d": (604800, 3600)}
"""Overview ranges: (seconds covered, seconds per bar of the chart)."""
SCAN_WINDOW = 20_000
"""How many of the newest completions one page of a filtered list looks through."""
DAY = 86400
_FAILURE = int(JobResult.FAILURE)
_FINISHED_BADLY = (RunStatus.FAILED, RunStatus.DEAD)


@dataclass(frozen=True, slots=True)
class CompletionPage:
    """One page of completions, newest first."""

    items: list[dict[str, Any]]
    next: str | None
    """The ``before`` cursor of the next page, None on the last."""
    searched_to: float | None = None
    """Set when the page is short because the scan window ended (not the data): the
    time the search reached; the next page searches older completions."""


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of handler runs, newest first."""

    items: list[dict[str, Any]]
    next: str | None


def _hour(moment: float) -> int:
    return int(moment // 3600) * 3600


# -- overview ------------------------------------------------------------------


def _chart(connection: Connection, now: float, range_key: str) -> dict[str, Any]:
    seconds, step = RANGES[range_key]
    slots = seconds // step
    end = (int(now) // step + 1) * step
    start = end - slots * step
    s = completion_stats.c
    slot = ((s.bucket - start) // step).label("slot")
    query = (
        select(slot, s.job_result, func.sum(s.count))
        .where(s.dimension == ALL, s.bucket >= start)
        .group_by(slot, s.job_result)
    )
    bars: list[dict[int, int]] = [{} for _ in range(slots)]
    totals: dict[int, int] = {}
    for index, result, count in connection.execute(query):
        index = int(index)
        if 0 <= index < slots:
            bars[index][int(result)] = bars[index].get(int(result), 0) + int(count)
            totals[int(result)] = totals.get(int(result), 0) + int(count)
    return {
        "range": range_key,
        "start": start,
        "step": step,
        "bars": [{"start": start + i * step, "counts": counts} for i, counts in enumerate(bars)],
        "totals": totals,
    }


def _failure_rates(
    connection: Connection, dimension: str, since: float, limit: int
) -> list[dict[str, Any]]:
    s = completion_stats.c
    failures = func.sum(case((s.job_result == _FAILURE, s.count), else_=0))
    query = (
        select(s.subject, func.sum(s.count), failures)
        .where(s.dimension == dimension, s.bucket >= _hour(since))
        .group_by(s.subject)
    )
    rows = [
        {"id": subject, "total": int(total), "failures": int(failed or 0)}
        for subject, total, failed in connection.execute(query)
    ]
    for row in rows:
        row["rate"] = row["failures"] / row["total"] if row["total"] else 0.0
    rows.sort(key=lambda r: (-r["rate"], -r["failures"], r["id"]))
    return rows[:limit]


def _names(connection: Connection, table: Any, column: Any, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(table.c.id, column).where(table.c.id.in_(wanted))
    return {row[0]: row[1] for row in connection.execute(query)}


def run_handlers(connection: Connection, registered: Sequence[str]) -> list[str]:
    """Registered handlers, then any other handler that has open or dead runs."""
    query = (
        select(runs.c.handler)
        .where(runs.c.status.in_((*RunStatus.OPEN, RunStatus.DEAD)))
        .group_by(runs.c.handler)
    )
    others = sorted(set(connection.execute(query).scalars()) - set(registered))
    return [*registered, *others]


def _count_runs(connection: Connection, status: str, handler: str, since: float | None) -> int:
    query = select(func.count()).where(runs.c.status == status, runs.c.handler == handler)
    if since is not None:
        query = query.where(runs.c.id >= id_floor(since))
    return int(connection.execute(query).scalar_one())


def _last_error(connection: Connection, handler: str) -> dict[str, Any] | None:
    newest: Any = None
    for status in _FINISHED_BADLY:
        row = connection.execute(
            select(runs.c.id, runs.c.completion_id, runs.c.status, runs.c.finished_at)
            .where(runs.c.status == status, runs.c.handler == handler)
            .order_by(runs.c.id.desc())
            .limit(1)
        ).first()
        if row is not None and (newest is None or row.id > newest.id):
            newest = row
    if newest is None:
        return None
    error = connection.execute(select(runs.c.last_error).where(runs.c.id == newest.id)).scalar()
    return {
        "run_id": newest.id,
        "completion_id": newest.completion_id,
        "status": newest.status,
        "at": newest.finished_at,
        "error": error,
    }


def _health(
    connection: Connection, names: Sequence[str], since: float
) -> dict[str, dict[str, Any]]:
    held = runs.c.worker.isnot(None)
    open_query = (
        select(runs.c.handler, runs.c.status, held.label("held"), func.count())
        .where(runs.c.status.in_(RunStatus.OPEN))
        .group_by(runs.c.handler, runs.c.status, held)
    )
    health: dict[str, dict[str, Any]] = {}
    for name in names:
        succeeded = _count_runs(connection, RunStatus.SUCCEEDED, name, since)
        dead_recently = _count_runs(connection, RunStatus.DEAD, name, since)
        finished = succeeded + dead_recently
        health[name] = {
            "name": name,
            "now": dict.fromkeys(RunStatus.ALL, 0),
            "succeeded_recently": succeeded,
            "dead_recently": dead_recently,
            "success_rate": succeeded / finished if finished else None,
            "last_error": _last_error(connection, name),
        }
        health[name]["now"][RunStatus.DEAD] = _count_runs(connection, RunStatus.DEAD, name, None)
    for handler, status, is_held, count in connection.execute(open_query):
        if handler in health:
            shown = RunStatus.shown(status, "held" if is_held else None)
            health[handler]["now"][shown] += int(count)
    return health


def handler_health(
    engine: Engine, registered: Sequence[str], now: float, seconds: float = DAY
) -> list[dict[str, Any]]:
    """Per handler (registered ones first): runs now by status (succeeded over the last
    ``seconds``), the success rate of runs created then, and the newest error."""
    with engine.connect() as connection:
        names = run_handlers(connection, registered)
        health = _health(connection, names, now - seconds)
    return [health[name] for name in names]


def overview(
    engine: Engine,
    now: float,
    range_key: str,
    registered: Sequence[str],
    job_type_names: dict[str, str],
) -> dict[str, Any]:
    """Everything the overview shows, read in one connection."""
    seconds, _step = RANGES[range_key]
    since = now - seconds
    with engine.connect() as connection:
        chart = _chart(connection, now, range_key)
        by_type = _failure_rates(connection, BY_TYPE, since, 10)
        by_agent = _failure_rates(connection, BY_AGENT, since, 10)
        names = {**_names(connection, job_types, job_types.c.name, (r["id"] for r in by_type))}
        for row in by_type:
            row["name"] = job_type_names.get(row["id"]) or names.get(row["id"])
        machines = _names(
            connection, agent_summary, agent_summary.c.client_machine, (r["id"] for r in by_agent)
        )
        for row in by_agent:
            row["name"] = machines.get(row["id"])
        handlers = run_handlers(connection, registered)
        health = _health(connection, handlers, since)
    runs_now = dict.fromkeys(RunStatus.ALL, 0)
    recent = {"succeeded": 0, "dead": 0}
    for item in health.values():
        for status, count in item["now"].items():
            runs_now[status] += count
        recent["succeeded"] += item["succeeded_recently"]
        recent["dead"] += item["dead_recently"]
    waiting, oldest = backlog(engine, now)
    return {
        "now": now,
        "since": since,
        "since_hour": _hour(since),
        "chart": chart,
        "by_type": by_type,
        "by_agent": by_agent,
        "runs_now": runs_now,
        "runs_recent": recent,
        "backlog": {"waiting": waiting, "oldest_age": oldest},
        "handlers": [health[name] for name in handlers],
    }


# -- lists ---------------------------------------------------------------------


def _completion_filters(where: CompletionFilter) -> list[Any]:
    c = completions.c
    filters: list[Any] = []
    if where.agent_id is not None:
        filters.append(c.agent_id == str(where.agent_id))
    if where.job_id is not None:
        filters.append(c.job_id == str(where.job_id))
    if where.job_type_id is not None:
        filters.append(c.job_type_id == str(where.job_type_id))
    if where.job_type is not None:
        filters.append(c.job_type == where.job_type)
    if where.client_machine is not None:
        filters.append(c.client_machine == where.client_machine)
    if where.result is not None:
        filters.append(c.job_result == int(where.result))
    return filters


def list_completions(
    engine: Engine, where: CompletionFilter, limit: int = 50, before: str | None = None
) -> CompletionPage:
    """Completions newest first. With a filter other than time, one page looks through at
    most :data:`SCAN_WINDOW` completions; a page cut short by that says how far it got."""
    c = completions.c
    bounds: list[Any] = []
    if where.since is not None:
        bounds.append(c.id >= id_floor(where.since))
    if where.until is not None:
        bounds.append(c.id < id_floor(where.until))
    if before is not None:
        bounds.append(c.id < before)
    filters = _completion_filters(where)
    with engine.connect() as connection:
        if where.agent_id is not None and before is None:
            # Start at the agent's newest completion, however long ago that was.
            last = connection.execute(
                select(agent_summary.c.last_completion_id).where(
                    agent_summary.c.id == str(where.agent_id)
                )
            ).scalar()
            if last is None:
                return CompletionPage([], None)
            bounds.append(c.id <= last)
        floor = None
        if filters:
            floor = connection.execute(
                select(c.id).where(*bounds).order_by(c.id.desc()).offset(SCAN_WINDOW).limit(1)
            ).scalar()
        query = select(completions).where(*bounds, *filters)
        if floor is not None:
            query = query.where(c.id >= floor)
        rows = connection.execute(query.order_by(c.id.desc()).limit(limit + 1)).all()
        searched_to = None
        if len(rows) <= limit and floor is not None:
            searched_to = connection.execute(
                select(c.received_at).where(c.id == floor)
            ).scalar_one()
    items = [completion_json(row) for row in rows[:limit]]
    if len(rows) > limit:
        return CompletionPage(items, items[-1]["id"])
    return CompletionPage(items, floor, searched_to)


def _run_range(status: str, handler: str, before: str | None, limit: int) -> Any:
    if status == RunStatus.RUNNING:
        condition: Any = and_(runs.c.status.in_(RunStatus.OPEN), runs.c.worker.isnot(None))
    elif status in RunStatus.OPEN:
        condition = and_(runs.c.status == status, runs.c.worker.is_(None))
    else:
        condition = runs.c.status == status
    query = select(runs).where(condition, runs.c.handler == handler)
    if before is not None:
        query = query.where(runs.c.id < before)
    return query.order_by(runs.c.id.desc()).limit(limit)


def list_runs(
    engine: Engine,
    status: str | None,
    handler: str | None,
    registered: Sequence[str],
    limit: int = 50,
    before: str | None = None,
) -> RunPage:
    """Runs newest first, by status and handler, merged from one index range per
    (status, handler) pair, so a rare status is as quick to list as a common one."""
    with engine.connect() as connection:
        if status is None and handler is None:
            query = select(runs).order_by(runs.c.id.desc()).limit(limit + 1)
            if before is not None:
                query = query.where(runs.c.id < before)
            rows: list[Any] = list(connection.execute(query))
        else:
            statuses = [status] if status else list(RunStatus.ALL)
            handlers = [handler] if handler else run_handlers(connection, registered)
            if not handler and status in (RunStatus.SUCCEEDED, None):
                extra = select(runs.c.handler).where(runs.c.status == RunStatus.SUCCEEDED)
                handlers += [
                    h
                    for h in connection.execute(extra.group_by(runs.c.handler)).scalars()
                    if h not in handlers
                ]
            ranges = [
                list(connection.execute(_run_range(s, h, before, limit + 1)))
                for s in statuses
                for h in handlers
            ]
            merged = heapq.merge(*ranges, key=lambda row: row.id, reverse=True)
            rows = [row for _, row in zip(range(limit + 1), merged, strict=False)]
    items = [run_json(row) for row in rows[:limit]]
    return RunPage(items, items[-1]["id"] if len(rows) > limit else None)


# -- catalog pages -------------------------------------------------------------


def _unresolved(
    connection: Connection,
    limit: int | None,
    after: tuple[str, str] | None,
    named: Mapping[str, str],
) -> list[dict[str, Any]]:
    # Job types counted in completions but neither in the catalog nor in the configuration
    # (the nil id of one the poller could not resolve). Nameless, they sort first.
    if after is not None and after[0] != "":
        return []
    s = completion_stats.c
    subject = s.subject.collate("C") if connection.dialect.name == "postgresql" else s.subject
    query = (
        select(s.subject)
        .where(s.dimension == BY_TYPE, ~exists().where(job_types.c.id == s.subject))
        .group_by(s.subject)
        .order_by(subject)
    )
    if named:
        query = query.where(s.subject.not_in(sorted(named)))
    if after is not None:
        query = query.where(subject > after[1])
    if limit is not None:
        query = query.limit(limit)
    return [
        {"id": guid, "name": None, "origin": "unresolved", "first_seen": None, "config_name": None}
        for guid in connection.execute(query).scalars()
    ]


def job_type_catalog(
    engine: Engine,
    now: float,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
    named: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Job types in the order of :func:`~jobhooks.store.queries.job_type_rows` (the
    catalog merged with ``named``, the configuration's GUID -> name), ``limit`` after the
    key ``after`` (every one when ``limit`` is None), with their completions (stored, failed,
    and over the last day). Job types counted in completions but unknown to both (origin
    ``unresolved``, no name) come first."""
    named = named or {}
    with engine.connect() as connection:
        rows = job_type_rows(connection, limit, after, named)
        unresolved = _unresolved(connection, limit, after, named)
        if unresolved:
            merged = heapq.merge(
                unresolved, rows, key=lambda row: job_type_key(row["name"], row["id"])
            )
            rows = list(merged)[:limit]
        s = completion_stats.c
        failures = func.sum(case((s.job_result == _FAILURE, s.count), else_=0))
        recent = func.sum(case((s.bucket >= _hour(now - DAY), s.count), else_=0))
        counts = select(s.subject, func.sum(s.count), failures, recent).where(
            s.dimension == BY_TYPE
        )
        if limit is not None:
            counts = counts.where(s.subject.in_([row["id"] for row in rows]))
        totals = {
            subject: (int(total), int(failed or 0), int(day or 0))
            for subject, total, failed, day in connection.execute(counts.group_by(s.subject))
        }
    for row in rows:
        row["completions"], row["failures"], row["last_day"] = totals.get(row["id"], (0, 0, 0))
    return rows


def job_type_names(engine: Engine) -> dict[str, str]:
    """Names of the job types in the catalog, by id."""
    with engine.connect() as connection:
        rows = connection.execute(select(job_types.c.id, job_types.c.name))
        return {row.id: row.name for row in rows}


def agents(engine: Engine, now: float, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
    """Agents seen (by machine), with totals and the last day's failure rate; and how
    many agents there are in all."""
    s = completion_stats.c
    failures = func.sum(case((s.job_result == _FAILURE, s.count), else_=0))
    day = (
        select(s.subject, func.sum(s.count), failures)
        .where(s.dimension == BY_AGENT, s.bucket >= _hour(now - DAY))
        .group_by(s.subject)
    )
    with engine.connect() as connection:
        count_all = select(func.count()).select_from(agent_summary)
        total = int(connection.execute(count_all).scalar_one())
        rows = connection.execute(
            select(agent_summary)
            .order_by(agent_summary.c.client_machine, agent_summary.c.id)
            .limit(limit)
        ).all()
        recent = {
            subject: (int(count), int(failed or 0))
            for subject, count, failed in connection.execute(day)
        }
    listed = []
    for row in rows:
        count, failed = recent.get(row.id, (0, 0))
        listed.append(
            {
                "id": row.id,
                "client_machine": row.client_machine,
                "username": row.username,
                "first_seen": row.first_seen,
                "last_seen": row.last_seen,
                "last_completion_id": row.last_completion_id,
                "completions": int(row.completions),
                "failures": int(row.failures),
                "rate": row.failures / row.completions if row.completions else 0.0,
                "last_day": count,
                "last_day_failures": failed,
                "last_day_rate": failed / count if count else None,
            }
        )
    return listed, total


def filter_choices(engine: Engine, limit: int = 500) -> dict[str, list[tuple[str, str]]]:
    """Options of the completions filters: agents (id, machine) and job types (id, name),
    each list empty when there are more than ``limit`` (the filter then takes a GUID)."""
    with engine.connect() as connection:
        agent_rows = connection.execute(
            select(agent_summary.c.id, agent_summary.c.client_machine)
            .order_by(agent_summary.c.client_machine, agent_summary.c.id)
            .limit(limit + 1)
        ).all()
        type_rows = connection.execute(
            select(job_types.c.id, job_types.c.name)
            .order_by(*job_type_order(connection))
            .limit(limit + 1)
        ).all()
    return {
        "agents": [(row.id, row.client_machine) for row in agent_rows[:limit]]
        if len(agent_rows) <= limit
        else [],
        "job_types": [(row.id, row.name) for row in type_rows] if len(type_rows) <= limit else [],
    }
