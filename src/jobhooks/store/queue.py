"""The queue of handler runs: new runs (handed straight to this process's worker when it has
room), claims (including the runs of processes that are gone), outcomes, replays, and the
status operators see (``running`` is derived: an open run a worker holds)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, case, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from jobhooks.sdk.trigger import Trigger
from jobhooks.store.dialect import execute_many
from jobhooks.store.digests import close_digests, members_of
from jobhooks.store.ids import new_id
from jobhooks.store.nodes import forget_nodes, has_node, still_gone
from jobhooks.store.records import ClaimedRun, PlannedRun, RunOutcome, RunReceipt, RunStatus
from jobhooks.store.tables import attempts, completions, runs

__all__ = [
    "ClaimRequest",
    "HandOff",
    "Reserve",
    "claim_runs",
    "completion_fields",
    "finish_runs",
    "give_back_runs",
    "hold_runs",
    "insert_runs",
    "new_runs",
    "release_held",
    "replay_dead",
    "replay_run",
    "shown_condition",
    "stored_trigger",
]

Reserve = Callable[[int], tuple[str, int]]
"""Asks the local worker for up to n run slots (a negative n gives some back); returns
(worker id, slots granted)."""
_INSERT_RUN = runs.insert()

LOST = "lost"
"""Outcome of an attempt whose worker stopped before it reported (its lease expired)."""


def completion_fields(row: Row[Any]) -> dict[str, Any]:
    """Context fields (parsed) from a completions row."""
    timestamp = row.request_timestamp
    return {
        "agent_id": uuid.UUID(row.agent_id),
        "username": row.username,
        "client_machine": row.client_machine,
        "job_result": row.job_result,
        "job_id": uuid.UUID(row.job_id),
        "job_type": row.job_type,
        "job_type_id": uuid.UUID(row.job_type_id),
        "operation_type": row.operation_type,
        "certificate_id": row.certificate_id,
        "request_timestamp": (
            datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None
        ),
        "current_retry_count": row.current_retry_count,
        "message": row.message,
        "completion_id": row.id,
        "source": row.source,
        "job_history_id": row.job_history_id,
    }


def stored_trigger(text: str | None) -> Trigger | None:
    """The trigger of a runs row (stored as JSON), if it has one."""
    return Trigger.from_dict(json.loads(text)) if text else None


class HandOff:
    """The slots this process's worker granted the runs of one transaction: those runs are
    stored held by it and start at once, without a claim."""

    def __init__(self, reserve: Reserve | None, wanted: int) -> None:
        self._reserve = reserve
        self.worker, self.granted = reserve(wanted) if reserve and wanted else ("", 0)

    def take(self) -> bool:
        """Use one slot, if one is left."""
        if self.granted <= 0:
            return False
        self.granted -= 1
        return True

    def give_back(self) -> None:
        """Return the slots left unused."""
        if self.granted and self._reserve is not None:
            self._reserve(-self.granted)
        self.granted = 0


def new_runs(
    completion_id: str,
    fields: dict[str, Any],
    planned: Sequence[tuple[PlannedRun, Trigger | None]],
    now: float,
    handoff: HandOff,
) -> tuple[list[dict[str, Any]], list[RunReceipt], list[ClaimedRun]]:
    """The rows of a completion's new runs (each with the trigger it was created for),
    pending; those the hand-off has slots for are held by its worker from now (a crash
    before they end only delays them: the runs of a process that is gone are taken
    back). Returns the rows, the receipts and the runs handed over (with the context
    ``fields``)."""
    rows: list[dict[str, Any]] = []
    receipts: list[RunReceipt] = []
    handed: list[ClaimedRun] = []
    for plan, trigger in planned:
        run_id = new_id()
        status = RunStatus.HELD if plan.held else RunStatus.PENDING
        row = {
            "id": run_id,
            "completion_id": completion_id,
            "handler": plan.handler,
            "status": status,
            "attempts": 0,
            "total_attempts": 0,
            "max_attempts": plan.max_attempts,
            "due_at": now,
            "lease_until": None,
            "worker": None,
            "created_at": now,
            "started_at": None,
            "trigger": json.dumps(trigger.to_dict(), ensure_ascii=False) if trigger else None,
        }
        if not plan.held and handoff.take():
            lease = now + plan.lease
            row.update(
                attempts=1,
                total_attempts=1,
                due_at=lease,
                lease_until=lease,
                worker=handoff.worker,
                started_at=now,
            )
            handed.append(
                ClaimedRun(
                    run_id,
                    plan.handler,
                    completion_id,
                    1,
                    1,
                    plan.max_attempts,
                    {**fields, "trigger": trigger} if trigger else fields,
                    handoff.worker,
                    now,
                )
            )
        rows.append(row)
        receipts.append(RunReceipt(run_id, plan.handler, status, trigger))
    return rows, receipts, handed


def insert_runs(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Store the rows of :func:`new_runs`."""
    execute_many(connection, _INSERT_RUN, rows)


def shown_condition(status: str) -> Any:
    """SQL: the run's status as operators see it is ``status``."""
    if status == RunStatus.RUNNING:
        return and_(runs.c.status.in_(RunStatus.OPEN), runs.c.worker.isnot(None))
    if status in RunStatus.OPEN:
        return and_(runs.c.status == status, runs.c.worker.is_(None))
    return runs.c.status == status


class ClaimRequest:
    """A worker asking for up to ``limit`` due runs, each leased for its handler's time;
    the runs held by the ``dead`` processes come first."""

    __slots__ = ("dead", "leases", "limit", "worker")

    def __init__(
        self,
        worker: str,
        limit: int,
        leases: dict[str, float],
        default_lease: float,
        dead: Mapping[str, float] | None = None,
    ):
        self.worker = worker
        self.limit = limit
        self.leases = _Leases(leases, default_lease)
        self.dead: Mapping[str, float] = dead or {}
        """The processes found gone, each with the heartbeat it was found with."""


class _Leases(dict[str, float]):
    def __init__(self, leases: dict[str, float], default: float) -> None:
        super().__init__(leases)
        self.default = default

    def __missing__(self, key: str) -> float:
        return self.default


_CANDIDATE_COLUMNS = (
    runs.c.id,
    runs.c.completion_id,
    runs.c.handler,
    runs.c.status,
    runs.c.worker,
    runs.c.attempts,
    runs.c.total_attempts,
    runs.c.max_attempts,
    runs.c.started_at,
    runs.c.lease_until,
    runs.c.created_at,
    runs.c.trigger,
    runs.c.group_key,
    runs.c.due_at,
)


def _candidates(connection: Connection, request: ClaimRequest, now: float) -> list[Row[Any]]:
    """Runs to take: those the dead processes held, then due ones that nobody alive holds
    (waiting, retrying, or held by a process without a heartbeat row whose lease ran out)."""
    postgres = connection.dialect.name == "postgresql"
    found: list[Row[Any]] = []
    gone = still_gone(connection, request.dead)
    if gone:
        query = (
            select(*_CANDIDATE_COLUMNS)
            .where(runs.c.status.in_(RunStatus.OPEN), runs.c.worker.in_(gone))
            .limit(request.limit)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True, key_share=True)
        found = list(connection.execute(query))
        if len(found) < request.limit:
            forget_nodes(connection, gone)
    if len(found) < request.limit:
        query = (
            select(*_CANDIDATE_COLUMNS)
            .where(
                runs.c.status.in_(RunStatus.UNFINISHED),
                runs.c.due_at <= now,
                or_(runs.c.worker.is_(None), ~has_node(runs.c.worker)),
            )
            .order_by(runs.c.due_at)
            .limit(request.limit - len(found))
        )
        if postgres:
            # FOR NO KEY UPDATE: a check-in adding a completion to a digest (a key share
            # lock on its run) is not blocked by the claim, see store.digests.
            query = query.with_for_update(skip_locked=True, key_share=True)
        found += connection.execute(query)
    return found


def claim_runs(
    connection: Connection, requests: Sequence[ClaimRequest], now: float
) -> list[list[ClaimedRun]]:
    """Lease due runs to workers: pending ones, failed ones whose retry is due, and the
    runs of processes that are gone.

    A run taken from a gone process counts as a lost attempt; a run that has
    used all its attempts that way is dead rather than claimed again.
    """
    results: list[list[ClaimedRun]] = []
    for request in requests:
        candidates = _candidates(connection, request, now)
        claimed_rows = []
        lost_attempts = []
        dead = []
        for row in candidates:
            if row.worker is not None:
                lost_attempts.append(
                    {
                        "run_id": row.id,
                        "number": row.total_attempts,
                        "worker": row.worker,
                        "started_at": row.started_at or row.lease_until or now,
                        "finished_at": now,
                        "duration": max(0.0, now - (row.started_at or now)),
                        "outcome": LOST,
                        "error": f"worker {row.worker} stopped before reporting "
                        + (
                            "(its process is gone)"
                            if row.worker in request.dead
                            else "(its lease expired)"
                        ),
                        "traceback": None,
                    }
                )
                if row.attempts >= row.max_attempts:
                    dead.append(row.id)
                    continue
            claimed_rows.append(row)
        if lost_attempts:
            connection.execute(attempts.insert(), lost_attempts)
        if dead:
            connection.execute(
                update(runs)
                .where(runs.c.id.in_(dead))
                .values(
                    status=RunStatus.DEAD,
                    worker=None,
                    lease_until=None,
                    finished_at=now,
                    last_error="its worker stopped before reporting, and no attempts are left",
                )
            )
        if not claimed_rows:
            results.append([])
            continue
        execute_many(
            connection,
            _CLAIM,
            [
                {
                    "run_id": row.id,
                    "holder": request.worker,
                    "started": now,
                    "lease": now + request.leases[row.handler],
                }
                for row in claimed_rows
            ],
        )
        digests = [row.id for row in claimed_rows if row.group_key is not None]
        close_digests(connection, digests)
        members = members_of(connection, digests)
        completion_ids = {row.completion_id for row in claimed_rows}
        completion_ids.update(c for joined in members.values() for c, _trigger in joined)
        rows = connection.execute(
            select(completions).where(completions.c.id.in_(list(completion_ids)))
        ).all()
        fields = {row.id: completion_fields(row) for row in rows}
        results.append(
            [
                ClaimedRun(
                    id=row.id,
                    handler=row.handler,
                    completion_id=row.completion_id,
                    attempt=row.attempts + 1,
                    number=row.total_attempts + 1,
                    max_attempts=row.max_attempts,
                    fields=(
                        _digest_fields(fields, members[row.id], row.completion_id)
                        if row.id in members
                        else _with_trigger(fields[row.completion_id], row.trigger)
                    ),
                    worker=request.worker,
                    # A digest's dispatch latency counts from when it closed.
                    created_at=row.created_at if row.group_key is None else row.due_at,
                )
                for row in claimed_rows
            ]
        )
    return results


def _digest_fields(
    fields: dict[str, dict[str, Any]], joined: list[tuple[str, str | None]], first: str
) -> dict[str, Any]:
    """A digest's context fields: its newest completion's, with ``group`` the fields of
    every completion in it, oldest first (those a retention run removed are left out)."""
    group = [_with_trigger(fields[c], trigger) for c, trigger in joined if c in fields]
    return {**(group[-1] if group else fields[first]), "group": group}


TAKEN_OVER = "reported after its run was taken back from it"
"""Prefix of the error of an attempt that reported after it was recorded as lost."""


def _with_trigger(fields: dict[str, Any], trigger: str | None) -> dict[str, Any]:
    return {**fields, "trigger": stored_trigger(trigger)} if trigger else fields


def _record_attempt(insert: Any) -> Any:
    # A worker that reports after its run was taken back (its process stalled, or its
    # lease expired) finds its attempt recorded as lost: what it reports replaces that
    # guess, and the error says it came late, so the history shows the takeover.
    statement = insert(attempts)
    reported = ("worker", "started_at", "finished_at", "duration", "outcome", "traceback")
    late = literal(TAKEN_OVER) + func.coalesce(literal(": ") + statement.excluded.error, "")
    return statement.on_conflict_do_update(
        index_elements=[attempts.c.run_id, attempts.c.number],
        set_={
            **{name: statement.excluded[name] for name in reported},
            "error": case((attempts.c.outcome == LOST, late), else_=statement.excluded.error),
        },
    )


_RECORD_ATTEMPT = {
    "sqlite": _record_attempt(sqlite.insert),
    "postgresql": _record_attempt(postgresql.insert),
}
_FINISH = (
    update(runs)
    .where(
        and_(
            runs.c.id == bindparam("run_id"),
            runs.c.worker == bindparam("holder"),
            runs.c.total_attempts == bindparam("number"),
        )
    )
    .values(
        status=bindparam("new_status"),
        due_at=bindparam("new_due"),
        worker=None,
        lease_until=None,
        started_at=bindparam("started"),
        finished_at=bindparam("finished"),
        duration=bindparam("took"),
        last_error=bindparam("error"),
    )
)
_CLAIM = (
    update(runs)
    .where(runs.c.id == bindparam("run_id"))
    .values(
        # A digest stops collecting once a worker takes it.
        status=case(
            (runs.c.status == RunStatus.COLLECTING, RunStatus.PENDING), else_=runs.c.status
        ),
        worker=bindparam("holder"),
        attempts=runs.c.attempts + 1,
        total_attempts=runs.c.total_attempts + 1,
        started_at=bindparam("started"),
        lease_until=bindparam("lease"),
        due_at=bindparam("lease"),
    )
)


def finish_runs(connection: Connection, outcomes: Sequence[RunOutcome], now: float) -> list[None]:
    """Record the end of attempts in the history, and in each run still held by the
    worker that reports (a worker whose lease expired and was taken over by
    another only adds to the history)."""
    execute_many(
        connection,
        _RECORD_ATTEMPT[connection.dialect.name],
        [
            {
                "run_id": o.run_id,
                "number": o.number,
                "worker": o.worker,
                "started_at": o.started_at,
                "finished_at": o.finished_at,
                "duration": o.finished_at - o.started_at,
                # The attempt failed even when it leaves the run dead.
                "outcome": "succeeded" if o.status == RunStatus.SUCCEEDED else "failed",
                "error": o.error,
                "traceback": o.traceback,
            }
            for o in outcomes
        ],
    )
    execute_many(
        connection,
        _FINISH,
        [
            {
                "run_id": o.run_id,
                "holder": o.worker,
                "number": o.number,
                "new_status": o.status,
                "new_due": o.due_at,
                "started": o.started_at,
                "finished": o.finished_at,
                "took": o.finished_at - o.started_at,
                "error": o.error,
            }
            for o in outcomes
        ],
    )
    return [None] * len(outcomes)


def leased_to(connection: Connection, worker: str, now: float, ended: bool) -> list[str]:
    """The open runs leased to ``worker``; with ``ended``, only those whose lease has ended
    (a leased run is due when its lease ends, so this reads the due runs' index)."""
    query = select(runs.c.id).where(runs.c.status.in_(RunStatus.OPEN), runs.c.worker == worker)
    if ended:
        query = query.where(runs.c.due_at <= now, runs.c.lease_until <= now)
    return list(connection.execute(query).scalars())


def give_back_runs(
    connection: Connection, requests: Sequence[tuple[str, Sequence[str]]], now: float
) -> list[int]:
    """Make runs a worker took but never started waiting again, as if never taken (no
    attempt used, nothing in their history): (worker, run ids) in, how many per request
    out. Runs the worker no longer holds are left alone."""
    return [_untake(connection, worker, run_ids, now) for worker, run_ids in requests]


def hold_runs(
    connection: Connection, requests: Sequence[tuple[str, Sequence[str]]], now: float
) -> list[int]:
    """Hold runs a worker took but cannot start (their registration is gone: removed or
    disabled by a reload), as if never taken: they wait, with no attempt used, until a
    registration of their handler is valid again (:func:`release_held`). (worker, run
    ids) in, how many per request out."""
    return [
        _untake(connection, worker, run_ids, now, status=RunStatus.HELD)
        for worker, run_ids in requests
    ]


def _untake(
    connection: Connection, worker: str, run_ids: Sequence[str], now: float, **values: Any
) -> int:
    count = 0
    for start in range(0, len(run_ids), 500):
        result = connection.execute(
            update(runs)
            .where(
                runs.c.id.in_(run_ids[start : start + 500]),
                runs.c.worker == worker,
                runs.c.status.in_(RunStatus.OPEN),
            )
            .values(
                worker=None,
                lease_until=None,
                started_at=None,
                due_at=now,
                attempts=runs.c.attempts - 1,
                total_attempts=runs.c.total_attempts - 1,
                **values,
            )
        )
        count += result.rowcount
    return count


def replay_run(connection: Connection, run_ids: Sequence[str], now: float) -> list[str | None]:
    """Make finished or failed runs due again with a fresh set of attempts.

    Returns per run its status before the replay, or None when no such run
    exists. A run that is pending or running is left as it is.
    """
    return [_replay_one(connection, run_id, now) for run_id in run_ids]


def _replay_one(connection: Connection, run_id: str, now: float) -> str | None:
    for _ in range(3):
        row = connection.execute(
            select(runs.c.status, runs.c.worker).where(runs.c.id == run_id)
        ).first()
        if row is None:
            return None
        shown = RunStatus.shown(row.status, row.worker)
        if shown not in (RunStatus.FAILED, RunStatus.DEAD, RunStatus.SUCCEEDED):
            return shown
        # Only as it was read: a worker of another node may claim a failed run's retry
        # meanwhile (PostgreSQL), and a replay must not take it from under that attempt.
        holder = runs.c.worker.is_(None) if row.worker is None else runs.c.worker == row.worker
        replayed = connection.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == row.status, holder)
            .values(status=RunStatus.PENDING, attempts=0, due_at=now, worker=None, lease_until=None)
        )
        if replayed.rowcount == 1:
            return shown
    return RunStatus.RUNNING  # changed under every look: another node works on it


def release_held(
    connection: Connection, registrations: Sequence[tuple[str, int]], now: float
) -> list[int]:
    """Make the held runs of each (handler, max_attempts) due now: its registration is
    valid again, and its delivery policy applies. Returns how many per handler."""
    counts = []
    for handler, max_attempts in registrations:
        result = connection.execute(
            update(runs)
            .where(runs.c.status == RunStatus.HELD, runs.c.handler == handler)
            .values(status=RunStatus.PENDING, max_attempts=max_attempts, due_at=now)
        )
        counts.append(result.rowcount)
    return counts


def replay_dead(connection: Connection, handlers: Sequence[str], now: float) -> list[int]:
    """Make every dead run of each handler due again; returns how many per handler."""
    counts = []
    for handler in handlers:
        result = connection.execute(
            update(runs)
            .where(runs.c.handler == handler, runs.c.status == RunStatus.DEAD)
            .values(status=RunStatus.PENDING, attempts=0, due_at=now, worker=None, lease_until=None)
        )
        counts.append(result.rowcount)
    return counts
