"""What operators read: completions, runs, handlers' health, the overview, agents. Read-only,
the same SQL on SQLite and PostgreSQL, answered as :mod:`jobhooks.store.views` records.

Every query stays fast with millions of completions: counts come from the
time-bucketed ``completion_stats`` and from ``agent_summary``, runs are found
through the ``(status, handler, id)`` index one range at a time, and a
filtered list of completions scans a bounded window of the newest ids.
"""

from __future__ import annotations

import heapq
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, case, func, or_, select

from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.store.access import Database
from jobhooks.store.catalog import job_type_names, job_type_order, job_type_page
from jobhooks.store.digests import members_of
from jobhooks.store.ids import id_floor, stored_id
from jobhooks.store.queue import shown_condition
from jobhooks.store.records import RunStatus
from jobhooks.store.stats import ALL, BY_AGENT, BY_TYPE
from jobhooks.store.tables import (
    agent_summary,
    attempts,
    completion_stats,
    completions,
    digest_members,
    job_types,
    runs,
)
from jobhooks.store.views import (
    AgentView,
    AttemptView,
    CompletionDetail,
    CompletionPage,
    CompletionView,
    FilterChoices,
    HandlerHealth,
    JobTypePage,
    LastError,
    Overview,
    RunDetail,
    RunPage,
    RunView,
)

__all__ = [
    "DAY",
    "MAX_PAGE",
    "RANGES",
    "SCAN_WINDOW",
    "CompletionFilter",
    "ReadModel",
    "agents",
    "backlog",
    "completion_detail",
    "completion_page",
    "digest_totals",
    "dispatch_latencies",
    "filter_choices",
    "handler_health",
    "not_sent_totals",
    "overview",
    "run_page",
    "run_totals",
    "totals_by_result",
]

MAX_PAGE = 500
"""The most rows one page may hold."""
RANGES: dict[str, tuple[int, int]] = {"1h": (3600, 60), "24h": (86400, 900), "7d": (604800, 3600)}
"""Overview ranges: (seconds covered, seconds per bar of the chart)."""
SCAN_WINDOW = 20_000
"""How many of the newest completions one page of a filtered list looks through."""
DAY = 86400
_FAILURE = int(JobResult.FAILURE)
_FINISHED_BADLY = (RunStatus.FAILED, RunStatus.DEAD)
_MAX_HANDLERS = 1000
"""Handlers looked up per status at most (each costs one index seek)."""


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


def _hour(moment: float) -> int:
    return int(moment // 3600) * 3600


# -- records -------------------------------------------------------------------


def completion_view(row: Row[Any]) -> CompletionView:
    """A completions row as operators see it."""
    return CompletionView(
        id=row.id,
        received_at=row.received_at,
        source=row.source,
        agent_id=row.agent_id,
        username=row.username,
        client_machine=row.client_machine,
        job_id=row.job_id,
        job_type=row.job_type,
        job_type_id=row.job_type_id,
        operation_type=OperationType(row.operation_type).display,
        job_result=JobResult(row.job_result).display,
        certificate_id=row.certificate_id,
        request_timestamp=row.request_timestamp,
        current_retry_count=row.current_retry_count,
        retry_count_computed=bool(row.retry_count_computed),
        message=row.message,
        job_history_id=row.job_history_id,
        not_sent=json.loads(row.rule_notes) if row.rule_notes else [],
    )


def _run_fields(row: Row[Any], group_size: int | None = None) -> dict[str, Any]:
    waiting = row.status in RunStatus.UNFINISHED and row.worker is None
    return {
        "id": row.id,
        "completion_id": row.completion_id,
        "handler": row.handler,
        "status": RunStatus.shown(row.status, row.worker),
        "attempts": row.attempts,
        "total_attempts": row.total_attempts,
        "max_attempts": row.max_attempts,
        "due_at": row.due_at if waiting else None,
        "lease_until": row.lease_until if row.worker is not None else None,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration": row.duration,
        "last_error": row.last_error,
        "trigger": json.loads(row.trigger) if row.trigger else None,
        "group_size": group_size,
        "closes_at": row.due_at if row.status == RunStatus.COLLECTING else None,
    }


def run_view(row: Row[Any], group_size: int | None = None) -> RunView:
    """A handler_runs row as operators see it."""
    return RunView(**_run_fields(row, group_size))


def _group_sizes(connection: Connection, rows: Sequence[Row[Any]]) -> dict[str, int]:
    """How many completions each digest among ``rows`` holds."""
    digests = [row.id for row in rows if row.group_key is not None]
    if not digests:
        return {}
    query = (
        select(digest_members.c.run_id, func.count())
        .where(digest_members.c.run_id.in_(digests))
        .group_by(digest_members.c.run_id)
    )
    return {run_id: int(count) for run_id, count in connection.execute(query)}


# -- completions ---------------------------------------------------------------


def _filters(where: CompletionFilter) -> list[Any]:
    c = completions.c
    given: list[tuple[object, Any]] = [
        (where.agent_id, lambda v: c.agent_id == str(v)),
        (where.job_id, lambda v: c.job_id == str(v)),
        (where.job_type_id, lambda v: c.job_type_id == str(v)),
        (where.job_type, lambda v: c.job_type == v),
        (where.client_machine, lambda v: c.client_machine == v),
        (where.result, lambda v: c.job_result == int(v)),
    ]
    return [condition(value) for value, condition in given if value is not None]


def completion_page(
    connection: Connection, where: CompletionFilter, limit: int = 50, before: str | None = None
) -> CompletionPage:
    """Completions newest first, older than the ``before`` id if given. With a filter other
    than time, one page looks through at most :data:`SCAN_WINDOW` completions; a page cut
    short by that says how far it got (and ``next`` goes on from there)."""
    limit = min(limit, MAX_PAGE)
    c = completions.c
    bounds: list[Any] = []
    if where.since is not None:
        bounds.append(c.id >= id_floor(where.since))
    if where.until is not None:
        bounds.append(c.id < id_floor(where.until))
    if before is not None:
        bounds.append(c.id < before)
    filters = _filters(where)
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
    items = [completion_view(row) for row in rows[:limit]]
    if len(rows) > limit:
        return CompletionPage(items, items[-1].id)
    searched_to = None
    if floor is not None:
        searched_to = connection.execute(select(c.received_at).where(c.id == floor)).scalar_one()
    return CompletionPage(items, floor, searched_to)


def completion_detail(connection: Connection, completion_id: str) -> CompletionDetail | None:
    """One completion with its runs, each with its attempts; None if there is none."""
    row = connection.execute(select(completions).where(completions.c.id == completion_id)).first()
    if row is None:
        return None
    joined = select(digest_members.c.run_id).where(digest_members.c.completion_id == completion_id)
    run_rows = connection.execute(
        select(runs)
        .where(
            or_(
                and_(runs.c.completion_id == completion_id, runs.c.group_key.is_(None)),
                runs.c.id.in_(joined),
            )
        )
        .order_by(runs.c.id)
    ).all()
    history: dict[str, list[AttemptView]] = {run.id: [] for run in run_rows}
    members = members_of(connection, [run.id for run in run_rows if run.group_key is not None])
    attempt_rows = connection.execute(
        select(attempts)
        .where(attempts.c.run_id.in_(list(history)))
        .order_by(attempts.c.run_id, attempts.c.number)
    )
    for attempt in attempt_rows:
        history[attempt.run_id].append(
            AttemptView(
                attempt.number,
                attempt.worker,
                attempt.started_at,
                attempt.finished_at,
                attempt.duration,
                attempt.outcome,
                attempt.error,
                attempt.traceback,
            )
        )
    details = []
    for run in run_rows:
        fields = _run_fields(run, len(members[run.id]) if run.id in members else None)
        for member, trigger in members.get(run.id, ()):
            if member == completion_id:
                # A digest opened on its first member; this one joined it for its own reason.
                fields["trigger"] = json.loads(trigger) if trigger else None
        details.append(
            RunDetail(
                **fields,
                attempt_history=history[run.id],
                group=[member for member, _trigger in members.get(run.id, ())],
            )
        )
    view = completion_view(row)
    return CompletionDetail(**{**view.as_json(), "handler_runs": details})


def completions_by_id(connection: Connection, ids: Sequence[str]) -> dict[str, CompletionView]:
    """The completions of ``ids`` that are stored (a digest's members, to say what each
    was), by id."""
    if not ids:
        return {}
    rows = connection.execute(select(completions).where(completions.c.id.in_(list(ids))))
    return {row.id: completion_view(row) for row in rows}


# -- runs ----------------------------------------------------------------------


def _handlers_with(connection: Connection, status: str) -> list[str]:
    """The handlers that have runs stored with ``status``: one index seek each, however
    many runs there are."""
    found: list[str] = []
    last = None
    while len(found) < _MAX_HANDLERS:
        query = select(func.min(runs.c.handler)).where(runs.c.status == status)
        if last is not None:
            query = query.where(runs.c.handler > last)
        last = connection.execute(query).scalar()
        if last is None:
            break
        found.append(last)
    return found


def run_handlers(connection: Connection, registered: Sequence[str]) -> list[str]:
    """Registered handlers, then any other handler that has open, dead or held runs."""
    others = {
        h
        for status in (*RunStatus.UNFINISHED, RunStatus.DEAD, RunStatus.HELD)
        for h in _handlers_with(connection, status)
    }
    return [*registered, *sorted(others - set(registered))]


def _run_range(status: str, handler: str, before: str | None, limit: int) -> Any:
    query = select(runs).where(shown_condition(status), runs.c.handler == handler)
    if before is not None:
        query = query.where(runs.c.id < before)
    return query.order_by(runs.c.id.desc()).limit(limit)


def run_page(
    connection: Connection,
    status: str | None,
    handler: str | None,
    registered: Sequence[str],
    limit: int = 50,
    before: str | None = None,
) -> RunPage:
    """Runs newest first, by status and handler, merged from one index range per
    (status, handler) pair, so a rare status is as quick to list as a common one."""
    limit = min(limit, MAX_PAGE)
    if status is None and handler is None:
        query = select(runs).order_by(runs.c.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(runs.c.id < before)
        rows: list[Any] = list(connection.execute(query))
    else:
        statuses = [status] if status else list(RunStatus.ALL)
        handlers = [handler] if handler else run_handlers(connection, registered)
        if not handler and status in (RunStatus.SUCCEEDED, None):
            handlers += [
                name
                for name in _handlers_with(connection, RunStatus.SUCCEEDED)
                if name not in handlers
            ]
        ranges = [
            list(connection.execute(_run_range(s, h, before, limit + 1)))
            for s in statuses
            for h in handlers
        ]
        merged = heapq.merge(*ranges, key=lambda row: row.id, reverse=True)
        rows = [row for _, row in zip(range(limit + 1), merged, strict=False)]
    sizes = _group_sizes(connection, rows[:limit])
    items = [run_view(row, sizes.get(row.id)) for row in rows[:limit]]
    return RunPage(items, items[-1].id if len(rows) > limit else None)


def backlog(connection: Connection, now: float) -> tuple[int, float]:
    """How many runs wait (pending or failed awaiting retry) and the age of the oldest."""
    query = select(func.count(), func.min(runs.c.created_at)).where(
        runs.c.status.in_(RunStatus.OPEN), runs.c.worker.is_(None)
    )
    count, oldest = connection.execute(query).one()
    return int(count), (now - oldest) if oldest is not None else 0.0


def held_runs(connection: Connection) -> int:
    """How many runs wait, held, for their quarantined registration to be fixed."""
    query = select(func.count()).where(runs.c.status == RunStatus.HELD)
    return int(connection.execute(query).scalar_one())


# -- handlers ------------------------------------------------------------------


def _count_runs(connection: Connection, status: str, handler: str, since: float | None) -> int:
    query = select(func.count()).where(runs.c.status == status, runs.c.handler == handler)
    if since is not None:
        query = query.where(runs.c.id >= id_floor(since))
    return int(connection.execute(query).scalar_one())


def _last_error(connection: Connection, handler: str) -> LastError | None:
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
    return LastError(newest.id, newest.completion_id, newest.status, newest.finished_at, error)


def _health(connection: Connection, names: Sequence[str], since: float) -> dict[str, HandlerHealth]:
    held = runs.c.worker.isnot(None)
    open_query = (
        select(runs.c.handler, runs.c.status, held.label("held"), func.count())
        .where(runs.c.status.in_(RunStatus.UNFINISHED))
        .group_by(runs.c.handler, runs.c.status, held)
    )
    now_counts: dict[str, dict[str, int]] = {
        name: dict.fromkeys(RunStatus.ALL, 0) for name in names
    }
    for handler, status, is_held, count in connection.execute(open_query):
        if handler in now_counts:
            now_counts[handler][RunStatus.shown(status, "held" if is_held else None)] += int(count)
    health = {}
    for name in names:
        succeeded = _count_runs(connection, RunStatus.SUCCEEDED, name, since)
        dead_recently = _count_runs(connection, RunStatus.DEAD, name, since)
        finished = succeeded + dead_recently
        counts = now_counts[name]
        counts[RunStatus.SUCCEEDED] = succeeded
        counts[RunStatus.DEAD] = _count_runs(connection, RunStatus.DEAD, name, None)
        health[name] = HandlerHealth(
            name=name,
            now=counts,
            succeeded_recently=succeeded,
            dead_recently=dead_recently,
            success_rate=succeeded / finished if finished else None,
            last_error=_last_error(connection, name),
        )
    return health


def handler_health(
    connection: Connection, registered: Sequence[str], now: float, seconds: float = DAY
) -> list[HandlerHealth]:
    """Per handler (registered ones first): runs now by status (succeeded over the last
    ``seconds``), the success rate of runs created then, and the newest error."""
    names = run_handlers(connection, registered)
    health = _health(connection, names, now - seconds)
    return [health[name] for name in names]


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


def _machines(connection: Connection, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(agent_summary.c.id, agent_summary.c.client_machine).where(
        agent_summary.c.id.in_(wanted)
    )
    return {row.id: row.client_machine for row in connection.execute(query)}


def overview(
    connection: Connection,
    now: float,
    range_key: str,
    registered: Sequence[str],
    configured_names: Mapping[str, str],
) -> Overview:
    """Everything the overview shows, read in one connection."""
    seconds, _step = RANGES[range_key]
    since = now - seconds
    chart = _chart(connection, now, range_key)
    by_type = _failure_rates(connection, BY_TYPE, since, 10)
    by_agent = _failure_rates(connection, BY_AGENT, since, 10)
    names = job_type_names(connection, [row["id"] for row in by_type])
    for row in by_type:
        row["name"] = configured_names.get(row["id"]) or names.get(row["id"])
    machines = _machines(connection, (row["id"] for row in by_agent))
    for row in by_agent:
        row["name"] = machines.get(row["id"])
    handlers = run_handlers(connection, registered)
    health = _health(connection, handlers, since)
    runs_now = dict.fromkeys(RunStatus.ALL, 0)
    recent = {"succeeded": 0, "dead": 0}
    for item in health.values():
        for status, count in item.now.items():
            if status != RunStatus.SUCCEEDED:
                runs_now[status] += count
        recent["succeeded"] += item.succeeded_recently
        recent["dead"] += item.dead_recently
    waiting, oldest = backlog(connection, now)
    return Overview(
        now=now,
        since=since,
        since_hour=_hour(since),
        chart=chart,
        by_type=by_type,
        by_agent=by_agent,
        runs_now=runs_now,
        runs_recent=recent,
        backlog={"waiting": waiting, "oldest_age": oldest},
        handlers=[health[name] for name in handlers],
    )


# -- agents and filters ----------------------------------------------------------


def agents(connection: Connection, now: float, limit: int = 1000) -> tuple[list[AgentView], int]:
    """Agents seen (by machine), with totals and the last day's failure rate; and how
    many agents there are in all."""
    s = completion_stats.c
    failures = func.sum(case((s.job_result == _FAILURE, s.count), else_=0))
    day = (
        select(s.subject, func.sum(s.count), failures)
        .where(s.dimension == BY_AGENT, s.bucket >= _hour(now - DAY))
        .group_by(s.subject)
    )
    total = int(connection.execute(select(func.count()).select_from(agent_summary)).scalar_one())
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
            AgentView(
                id=row.id,
                client_machine=row.client_machine,
                username=row.username,
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                last_completion_id=row.last_completion_id,
                completions=int(row.completions),
                failures=int(row.failures),
                rate=row.failures / row.completions if row.completions else 0.0,
                last_day=count,
                last_day_failures=failed,
                last_day_rate=failed / count if count else None,
            )
        )
    return listed, total


def filter_choices(connection: Connection, limit: int = 500) -> FilterChoices:
    """Options of the completions filters: agents (id, machine) and job types (id, name),
    each list empty when there are more than ``limit`` (the filter then takes a GUID)."""
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
    return FilterChoices(
        agents=[(row.id, row.client_machine) for row in agent_rows]
        if len(agent_rows) <= limit
        else [],
        job_types=[(row.id, row.name) for row in type_rows] if len(type_rows) <= limit else [],
    )


# -- totals (small databases: the demo, tests) -------------------------------------


def run_totals(connection: Connection) -> dict[str, dict[str, int]]:
    """Every run counted by handler and status: a scan of the runs, for a summary."""
    held = runs.c.worker.isnot(None)
    query = select(runs.c.handler, runs.c.status, held.label("held"), func.count()).group_by(
        runs.c.handler, runs.c.status, held
    )
    counts: dict[str, dict[str, int]] = {}
    for handler, status, is_held, count in connection.execute(query):
        shown = RunStatus.shown(status, "held" if is_held else None)
        counts.setdefault(handler, dict.fromkeys(RunStatus.ALL, 0))[shown] += count
    return counts


def totals_by_result(connection: Connection) -> dict[str, int]:
    """How many completions are stored, by job result name: a scan, for a summary."""
    query = select(completions.c.job_result, func.count()).group_by(completions.c.job_result)
    return {JobResult(result).display: count for result, count in connection.execute(query)}


def not_sent_totals(connection: Connection) -> dict[str, int]:
    """How many completions matched each registration but fired none of its rules: a scan."""
    counts: dict[str, int] = {}
    query = select(completions.c.rule_notes).where(completions.c.rule_notes.isnot(None))
    for (notes,) in connection.execute(query):
        for note in json.loads(notes):
            counts[note["handler"]] = counts.get(note["handler"], 0) + 1
    return counts


def digest_totals(connection: Connection) -> dict[str, tuple[int, int]]:
    """Per handler with digests: how many completions its digests hold, in how many
    digests (a scan, for a summary)."""
    query = (
        select(runs.c.handler, func.count(), func.count(func.distinct(runs.c.id)))
        .where(runs.c.id == digest_members.c.run_id)
        .group_by(runs.c.handler)
    )
    return {
        handler: (int(members), int(count)) for handler, members, count in connection.execute(query)
    }


def dispatch_latencies(connection: Connection) -> list[float]:
    """Seconds from each run's commit to the start of its first attempt (a summary; digests,
    which wait for their window by design, are left out)."""
    query = select(attempts.c.started_at - runs.c.created_at).where(
        attempts.c.run_id == runs.c.id, attempts.c.number == 1, runs.c.group_key.is_(None)
    )
    return [max(0.0, value) for (value,) in connection.execute(query)]


class ReadModel:
    """The read model, off the event loop: what the API, the dashboard and the CLI show."""

    def __init__(self, database: Database, clock: Callable[[], float]) -> None:
        self._db = database
        self._clock = clock

    async def completions(
        self, where: CompletionFilter, limit: int = 50, before: str | None = None
    ) -> CompletionPage:
        """A page of completions (see :func:`completion_page`)."""
        position = stored_id(before) if before else None
        return await self._db.read(completion_page, where, limit, position)

    async def completion(self, completion_id: str) -> CompletionDetail | None:
        """One completion with its runs and attempts."""
        return await self._db.read(completion_detail, stored_id(completion_id))

    async def completions_by_id(self, ids: Sequence[str]) -> dict[str, CompletionView]:
        """The stored completions among ``ids``, by id."""
        return await self._db.read(completions_by_id, ids)

    async def runs(
        self,
        status: str | None,
        handler: str | None,
        registered: Sequence[str],
        limit: int = 50,
        before: str | None = None,
    ) -> RunPage:
        """A page of runs (see :func:`run_page`)."""
        position = stored_id(before) if before else None
        return await self._db.read(run_page, status, handler, registered, limit, position)

    async def handlers(self, registered: Sequence[str]) -> list[HandlerHealth]:
        """Each handler's runs now and over the last day."""
        return await self._db.read(handler_health, registered, self._clock())

    async def dead_runs(self, handler: str) -> int:
        """How many runs of ``handler`` are dead (what a replay would make due again)."""
        return await self._db.read(_count_runs, RunStatus.DEAD, handler, None)

    async def overview(
        self, range_key: str, registered: Sequence[str], configured_names: Mapping[str, str]
    ) -> Overview:
        """The dashboard's overview over ``range_key`` (see :data:`RANGES`)."""
        return await self._db.read(overview, self._clock(), range_key, registered, configured_names)

    async def job_types(
        self, limit: int, after: tuple[str, str] | None, named: Mapping[str, str]
    ) -> JobTypePage:
        """A page of the job type catalog (see :func:`~jobhooks.store.catalog.job_type_page`)."""
        return await self._db.read(job_type_page, self._clock(), limit, after, named)

    async def job_type_names(self) -> dict[str, str]:
        """Names of the cataloged job types, by GUID."""
        return await self._db.read(job_type_names)

    async def agents(self) -> tuple[list[AgentView], int]:
        """Agents seen, and how many there are in all."""
        return await self._db.read(agents, self._clock())

    async def filter_choices(self) -> FilterChoices:
        """Options of the completions filters."""
        return await self._db.read(filter_choices)

    def backlog(self) -> tuple[int, float]:
        """Waiting runs and the age of the oldest, now (for a metrics scrape's thread)."""
        return self._db.read_now(backlog, self._clock())

    def held_runs(self) -> int:
        """Runs held for quarantined registrations, now (for a metrics scrape's thread)."""
        return self._db.read_now(held_runs)

    async def run_totals(self) -> dict[str, dict[str, int]]:
        """Every run counted by handler and status (a scan: small databases)."""
        return await self._db.read(run_totals)

    async def totals_by_result(self) -> dict[str, int]:
        """Completions counted by result (a scan: small databases)."""
        return await self._db.read(totals_by_result)

    async def not_sent_totals(self) -> dict[str, int]:
        """Completions each registration's rules did not fire for (a scan: small databases)."""
        return await self._db.read(not_sent_totals)

    async def digest_totals(self) -> dict[str, tuple[int, int]]:
        """Completions in digests and digests, per handler (a scan: small databases)."""
        return await self._db.read(digest_totals)

    async def dispatch_latencies(self) -> list[float]:
        """Seconds from each run's commit to its first attempt (a scan: small databases)."""
        return await self._db.read(dispatch_latencies)
