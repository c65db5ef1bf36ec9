"""Each job's failure streak, and which registrations fired for it, kept in the transaction
that stores the job's completions.

A streak is the run of consecutive failed completions of one ``job_id`` reported for
one agent, in the order they are stored (check-in and pull mode alike); a
success or a warning ends it, Unknown and InProcess leave it as it is. A job is
known by its agent and its id (a :data:`JobKey`): another agent's reports of the
same job id, by mistake or by malice, neither add to a streak nor end it. Only
jobs in a streak have a row. On PostgreSQL the jobs of a batch are locked first
(a transaction-scoped advisory lock per job), so failures of one job stored by
two nodes at once are each counted once; on SQLite the write transaction
already holds the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, bindparam, delete, select, text

from jobhooks.sdk.enums import JobResult
from jobhooks.sdk.trigger import Trigger
from jobhooks.store.dialect import bind_list, execute_many, one_of, upsert
from jobhooks.store.records import JobMoment, PlannedRun, Rule
from jobhooks.store.tables import job_streaks, rule_state

__all__ = ["JobHistory", "JobKey", "Streak"]

JobKey = tuple[str, str]
"""A job as streaks know it: (agent id, job id), both as stored GUID text."""

_LOCK_SPACE = 7262516
"""The first key of this module's PostgreSQL advisory locks (the second is the job's hash)."""


@cache
def _statements(dialect: str) -> dict[str, Executable]:
    """This module's statements on ``dialect``: reads take the list of job ids as ``jobs``
    (their rows of every agent; the batch keeps its own), deletes one (agent, job) each."""
    streak_of = one_of(dialect, job_streaks.c.job_id, "jobs")
    fired_for = one_of(dialect, rule_state.c.job_id, "jobs")
    return {
        "streaks": select(
            job_streaks.c.agent_id,
            job_streaks.c.job_id,
            job_streaks.c.consecutive_failures,
            job_streaks.c.started_at,
        ).where(streak_of),
        "fired": select(
            rule_state.c.handler, rule_state.c.agent_id, rule_state.c.job_id, rule_state.c.fired_at
        ).where(fired_for),
        "end_streaks": delete(job_streaks).where(
            job_streaks.c.agent_id == bindparam("agent"), job_streaks.c.job_id == bindparam("job")
        ),
        "forget_fired": delete(rule_state).where(
            rule_state.c.agent_id == bindparam("agent"), rule_state.c.job_id == bindparam("job")
        ),
    }


def _for_jobs(connection: Connection, name: str, jobs: Iterable[JobKey]) -> Any:
    """Rows of the jobs ``jobs`` (a read finds them by job id, so they are filtered here)."""
    dialect = connection.dialect.name
    wanted = set(jobs)
    ids = sorted({job for _agent, job in wanted})
    rows = connection.execute(_statements(dialect)[name], {"jobs": bind_list(dialect, ids)})
    return [row for row in rows if (row.agent_id, row.job_id) in wanted]


def _each_job(connection: Connection, name: str, jobs: Iterable[JobKey]) -> None:
    rows = [{"agent": agent, "job": job} for agent, job in sorted(jobs)]
    execute_many(connection, _statements(connection.dialect.name)[name], rows)


_LOCK_JOBS = text(
    "SELECT count(pg_advisory_xact_lock(:space, hashtext(job))) "
    "FROM (SELECT unnest(CAST(:jobs AS text[])) AS job ORDER BY 1) AS jobs"
)


@dataclass(frozen=True, slots=True)
class Streak:
    """A job's consecutive failures and when they began."""

    failures: int = 0
    since: float | None = None


_NONE = Streak()


class JobHistory:
    """The streaks of the jobs of one batch of completions: read (and locked) at the start
    of the transaction, advanced completion by completion, written at its end."""

    def __init__(self, connection: Connection, jobs: Iterable[JobKey], stateful: bool) -> None:
        wanted = sorted(set(jobs))
        if connection.dialect.name == "postgresql" and wanted:
            locks = [f"{agent}/{job}" for agent, job in wanted]
            connection.execute(_LOCK_JOBS, {"space": _LOCK_SPACE, "jobs": locks})
        self._stored: dict[JobKey, Streak] = {}
        if wanted:
            self._stored = {
                (row.agent_id, row.job_id): Streak(row.consecutive_failures, row.started_at)
                for row in _for_jobs(connection, "streaks", wanted)
            }
        self._now: dict[JobKey, Streak] = dict(self._stored)
        self._fired: dict[tuple[str, JobKey], float] = {}
        self._fired_stored: set[tuple[str, JobKey]] = set()
        failing = sorted(self._stored)
        if stateful and failing:
            for row in _for_jobs(connection, "fired", failing):
                self._fired[(row.handler, (row.agent_id, row.job_id))] = row.fired_at
            self._fired_stored = set(self._fired)
        self._ended: set[JobKey] = set()

    def record(self, job: JobKey, result: JobResult, at: float) -> tuple[Streak, Streak]:
        """Advance ``job``'s streak by one completion; returns it before and after."""
        before = self._now.get(job, _NONE)
        if result is JobResult.FAILURE:
            after = Streak(before.failures + 1, before.since if before.failures else at)
        elif result in (JobResult.SUCCESS, JobResult.WARNING):
            after = _NONE
        else:
            after = before
        self._now[job] = after
        return before, after

    def decide(
        self,
        job: JobKey,
        fields: dict[str, object],
        planned: Sequence[PlannedRun],
        before: Streak,
        after: Streak,
        at: float,
    ) -> tuple[list[tuple[PlannedRun, Trigger | None]], list[tuple[str, str]]]:
        """The runs a completion starts (each with the trigger it fired, None for a
        registration without rules) and, for the registrations whose rules did not fire,
        why not: (handler, reason) pairs."""
        runs: list[tuple[PlannedRun, Trigger | None]] = []
        notes: list[tuple[str, str]] = []
        result = fields["job_result"]
        assert isinstance(result, JobResult)
        moments: dict[float | None, JobMoment] = {}
        for plan in planned:
            rule: Rule | None = plan.rule
            if rule is None:
                runs.append((plan, None))
                continue
            fired_at = self._fired.get((plan.handler, job)) if before.failures else None
            moment = moments.get(fired_at)
            if moment is None:
                moment = moments[fired_at] = JobMoment(
                    result=result,
                    before=before.failures,
                    streak=after.failures,
                    since=after.since if after.failures else before.since,
                    at=at,
                    fired_at=fired_at,
                    job_type=str(fields["job_type"]),
                    job_id=job[1],
                    client_machine=str(fields.get("client_machine") or ""),
                )
            decision = rule.decide(moment)
            if decision.trigger is None:
                notes.append((plan.handler, decision.note or "not sent"))
                continue
            runs.append((plan, decision.trigger))
            if decision.marks and after.failures:
                self._fired[(plan.handler, job)] = at
        if before.failures and not after.failures:
            # The streak ended: what fired for it is forgotten with it.
            for key in [key for key in self._fired if key[1] == job]:
                del self._fired[key]
            self._ended.add(job)
        return runs, notes

    def failures_before(self, job: JobKey) -> int:
        """The job's consecutive failures so far in this transaction."""
        return self._now.get(job, _NONE).failures

    def save(self, connection: Connection, at: float) -> None:
        """Write the streaks and the fired marks that changed."""
        rows = [
            {
                "agent_id": agent,
                "job_id": job,
                "consecutive_failures": streak.failures,
                "started_at": streak.since,
                "last_received_at": at,
            }
            for (agent, job), streak in self._now.items()
            if streak.failures and streak != self._stored.get((agent, job))
        ]
        ended = [
            key for key, streak in self._now.items() if not streak.failures and key in self._stored
        ]
        if ended:
            _each_job(connection, "end_streaks", ended)
        if rows:
            statement = upsert(
                connection,
                job_streaks,
                ["agent_id", "job_id"],
                ["consecutive_failures", "started_at", "last_received_at"],
            )
            execute_many(connection, statement, rows)
        if self._ended:
            _each_job(connection, "forget_fired", self._ended)
        marks = [
            {"handler": handler, "agent_id": agent, "job_id": job, "fired_at": fired}
            for (handler, (agent, job)), fired in self._fired.items()
            if (handler, (agent, job)) not in self._fired_stored or fired == at
        ]
        if marks:
            statement = upsert(
                connection, rule_state, ["handler", "agent_id", "job_id"], ["fired_at"]
            )
            execute_many(connection, statement, marks)
