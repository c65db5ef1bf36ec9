"""Pull mode: which rows of a page of the platform's job history become completions,
decided from what is stored. Reads only.

A row already done (or skipped, malformed, gone) is left alone, so reading it
again stores nothing. A finished row's retry count follows the runs of its job
before it, each with its status as first seen (an acknowledgement later turns
5 into 4, which must not reset the count).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from jobhooks.store.records import PlannedRun
from jobhooks.store.tables import poll_jobs, poll_rows

__all__ = ["DONE_STATES", "PolledRow", "RowPlan", "plan_rows", "retry_count"]

DONE_STATES = ("done", "skipped")
"""Rows whose final status counts in the retry chain of their job."""
_CHUNK = 500


COMPLETED_WILL_RETRY = 5
"""``Status`` of a run that ended and will be retried: it adds one to the next run's count."""


@dataclass(frozen=True, slots=True)
class PolledRow:
    """A row read from the platform's job history, ready to store: a finished one carries
    the context fields of its completion (all but the retry count) and the runs to create."""

    id: int
    """Its JobHistoryId."""
    job_id: str | None = None
    """None when the row is malformed beyond reading it."""
    finished: bool = False
    status: int | None = None
    """Its ``Status`` once finished (3, 4 or 5)."""
    started: float | None = None
    """``OperationStart``, seconds since the epoch."""
    ended: float | None = None
    """``OperationEnd`` (else ``OperationStart``) of a finished row."""
    fields: dict[str, Any] | None = None
    runs: tuple[PlannedRun, ...] = ()
    problem: str | None = None
    """Why the row cannot become a completion (malformed)."""


def retry_count(previous: tuple[int, int] | None) -> int:
    """``current_retry_count`` of a run, from the run of the same job just before it.

    ``previous`` is that run's (status as first seen, its own retry count), or
    None when no earlier run is known. Each run that ended CompletedWillRetry
    adds one; any other ending starts the count again.
    """
    if previous is None:
        return 0
    status, streak = previous
    return streak + 1 if status == COMPLETED_WILL_RETRY else 0


def _known(connection: Connection, feed: str, ids: list[int]) -> dict[int, str]:
    known: dict[int, str] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        query = select(poll_rows.c.job_history_id, poll_rows.c.state).where(
            poll_rows.c.feed == feed, poll_rows.c.job_history_id.in_(chunk)
        )
        known.update((row.job_history_id, row.state) for row in connection.execute(query))
    return known


def _latest_per_job(
    connection: Connection, feed: str, job_ids: set[str]
) -> dict[str, tuple[int, int, int]]:
    """The newest finished run stored per job: (id, status, retry streak)."""
    latest: dict[str, tuple[int, int, int]] = {}
    ordered = sorted(job_ids)
    for start in range(0, len(ordered), _CHUNK):
        query = select(
            poll_jobs.c.job_id,
            poll_jobs.c.job_history_id,
            poll_jobs.c.status,
            poll_jobs.c.retry_streak,
        ).where(poll_jobs.c.feed == feed, poll_jobs.c.job_id.in_(ordered[start : start + _CHUNK]))
        for row in connection.execute(query):
            latest[row.job_id] = (row.job_history_id, row.status, row.retry_streak)
    return latest


def _previous(
    connection: Connection, feed: str, job_id: str, before: int
) -> tuple[int, int, int] | None:
    query = (
        select(poll_rows.c.job_history_id, poll_rows.c.status, poll_rows.c.retry_streak)
        .where(
            poll_rows.c.feed == feed,
            poll_rows.c.job_id == job_id,
            poll_rows.c.job_history_id < before,
            poll_rows.c.state.in_(DONE_STATES),
        )
        .order_by(poll_rows.c.job_history_id.desc())
        .limit(1)
    )
    row = connection.execute(query).first()
    return (row.job_history_id, row.status, row.retry_streak) if row is not None else None


@dataclass(slots=True)
class RowPlan:
    """What to do with the rows of a page, decided from what is stored."""

    emit: list[tuple[PolledRow, int]] = field(default_factory=list)
    """Finished rows to turn into completions, with their retry counts."""
    skip: list[tuple[PolledRow, int]] = field(default_factory=list)
    open: list[PolledRow] = field(default_factory=list)
    bad: list[PolledRow] = field(default_factory=list)
    known: dict[int, str] = field(default_factory=dict)


def plan_rows(
    connection: Connection,
    feed: str,
    candidates: Iterable[PolledRow],
    horizon: float | None,
    chain: dict[str, tuple[int, int, int]] | None = None,
) -> RowPlan:
    """Decide, from what is stored, which rows become completions, which are recorded as
    running, skipped or malformed, and which were handled before. Reads only.

    ``chain`` (job id -> newest finished run: id, status, retry streak) carries
    runs decided but not stored yet, such as a dry run's earlier pages.
    """
    ordered = sorted(candidates, key=lambda c: c.id)
    plan = RowPlan(known=_known(connection, feed, [c.id for c in ordered]))
    unique: dict[int, PolledRow] = {}
    for candidate in ordered:
        if plan.known.get(candidate.id, "open") == "open":
            unique.setdefault(candidate.id, candidate)
    finished = [c.job_id for c in unique.values() if c.job_id is not None and c.finished]
    latest = _latest_per_job(connection, feed, set(finished))
    chain = dict(chain or {})
    for candidate in unique.values():
        job = candidate.job_id
        if candidate.problem is not None or job is None:
            plan.bad.append(candidate)
            continue
        if not candidate.finished or candidate.status is None:
            if candidate.id not in plan.known:
                plan.open.append(candidate)
            continue
        pending = chain.get(job)
        stored = latest.get(job)
        if stored is not None and stored[0] > candidate.id:
            # A run that finished after later runs of its job: look further back.
            stored = _previous(connection, feed, job, candidate.id)
        links = [link for link in (pending, stored) if link is not None and link[0] < candidate.id]
        previous = max(links) if links else None
        count = retry_count((previous[1], previous[2]) if previous else None)
        chain[job] = max(chain.get(job, (0, 0, 0)), (candidate.id, candidate.status, count))
        ended = candidate.ended
        if horizon is not None and ended is not None and ended < horizon:
            plan.skip.append((candidate, count))
        elif candidate.fields is None:
            plan.bad.append(candidate)
        else:
            plan.emit.append((candidate, count))
    return plan
