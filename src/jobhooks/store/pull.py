"""Pull mode in the store: the poller's lease and position per platform instance (feed),
the job history rows it acted on, and each page's completions, written together.

Every write starts by checking that this node still holds the lease, so the
completions of a page (stored through the check-in's own path), the rows it
records and the position it moves to commit together, and a node that lost its
lease writes nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, select, update

from jobhooks.store.access import Database
from jobhooks.store.catalog import resolvable_names, save_synced
from jobhooks.store.checkins import CheckinWrites
from jobhooks.store.dialect import execute_many, insert_ignore, upsert_newer
from jobhooks.store.pull_plan import PolledRow, RowPlan, plan_rows
from jobhooks.store.records import CheckinReceipt, NewCompletion
from jobhooks.store.tables import poll_gaps, poll_jobs, poll_rows, poll_state
from jobhooks.store.writer import BatchOperation

__all__ = [
    "Lease",
    "OpenRow",
    "PageWrite",
    "PollState",
    "PolledRow",
    "Pruning",
    "PullStore",
    "RowPlan",
    "WriteOutcome",
    "acquire_lease",
    "feed_of",
    "lease_holder",
    "load_awaited",
    "load_open_rows",
    "load_state",
    "prune",
    "release_lease",
    "write_page",
]

_INSERT_ROW = poll_rows.insert()
_FINISH_ROW = (
    update(poll_rows)
    .where(
        poll_rows.c.feed == bindparam("b_feed"),
        poll_rows.c.job_history_id == bindparam("b_id"),
        poll_rows.c.state == "open",
    )
    .values(
        state=bindparam("state"),
        status=bindparam("status"),
        retry_streak=bindparam("retry_streak"),
        completion_id=bindparam("completion_id"),
    )
)


def feed_of(url: str) -> str:
    """The key of a platform instance's state: a short hash of its API URL."""
    return hashlib.sha256(url.rstrip("/").casefold().encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class PollState:
    """The stored position of one platform's poller."""

    feed: str
    url: str
    cursor: int | None
    """Every row with a JobHistoryId up to this one has been read at least once."""
    cursor_start: float | None
    window_start: float | None
    """Offset mode: the OperationStart the window of rows read again starts at."""
    horizon: float | None
    """Rows whose run ended before this time are skipped (``start``)."""
    started_at: float
    owner: str | None
    lease_until: float
    caught_up_at: float | None
    """When the last poll that read to the end of the history started."""

    @property
    def initialized(self) -> bool:
        """False until the first poll has fixed where to start."""
        return self.cursor is not None or self.window_start is not None or self.horizon is not None


@dataclass(frozen=True, slots=True)
class OpenRow:
    """A row seen running, to be picked up when it finishes."""

    id: int
    job_id: str
    operation_start: float | None


@dataclass(frozen=True, slots=True)
class PageWrite:
    """What one commit of the poller writes."""

    feed: str
    owner: str
    lease: float
    candidates: Sequence[PolledRow] = ()
    cursor: int | None = None
    cursor_start: float | None = None
    window_start: float | None = None
    horizon: float | None = None
    gone: Sequence[int] = ()
    caught_up_at: float | None = None
    initialize: bool = False
    """Set the position even though one is stored (the first poll's starting point)."""
    awaited: Sequence[tuple[int, float]] = ()
    """Ids this page skipped (read by id), each with when it was first missed."""
    found: Sequence[int] = ()
    """Ids awaited until now that this page holds."""
    forget_awaited_before: float | None = None
    """Stop looking for ids first missed before this time."""


@dataclass(slots=True)
class WriteOutcome:
    """What a commit did."""

    lease_lost: bool = False
    created: list[tuple[PolledRow, str, int]] = field(default_factory=list)
    """Completions created: (candidate, completion id, current_retry_count)."""
    duplicates: int = 0
    """Finished rows a check-in had already reported (same agent and job history id)."""
    opened: int = 0
    skipped: int = 0
    bad: list[PolledRow] = field(default_factory=list)
    """Malformed rows recorded for the first time."""


def acquire_lease(
    connection: Connection,
    feed: str,
    url: str,
    owner: str,
    lease: float,
    now: float,
    dead: Sequence[str] = (),
) -> bool:
    """Take or renew the lease of ``feed`` unless another node holds a live one: a holder
    that is ``dead`` loses it at once, others when it runs out."""
    connection.execute(
        insert_ignore(connection, poll_state),
        [{"feed": feed, "url": url, "started_at": now, "lease_until": 0.0, "updated_at": now}],
    )
    result = connection.execute(
        update(poll_state)
        .where(
            poll_state.c.feed == feed,
            (poll_state.c.owner == owner)
            | poll_state.c.owner.is_(None)
            | (poll_state.c.lease_until < now)
            | poll_state.c.owner.in_(list(dead)),
        )
        .values(owner=owner, lease_until=now + lease, updated_at=now)
    )
    return result.rowcount == 1


def release_lease(connection: Connection, feed: str, owner: str, now: float) -> None:
    """Give the lease up (another node may take it at once)."""
    connection.execute(
        update(poll_state)
        .where(poll_state.c.feed == feed, poll_state.c.owner == owner)
        .values(owner=None, lease_until=0.0, updated_at=now)
    )


def _fence(connection: Connection, feed: str, owner: str, lease: float, now: float) -> bool:
    # The row lock this takes makes another node's takeover wait for this commit.
    result = connection.execute(
        update(poll_state)
        .where(poll_state.c.feed == feed, poll_state.c.owner == owner)
        .values(lease_until=now + lease, updated_at=now)
    )
    return result.rowcount == 1


def load_state(connection: Connection, feed: str) -> PollState | None:
    """The stored state of ``feed``, if any."""
    row = connection.execute(select(poll_state).where(poll_state.c.feed == feed)).first()
    if row is None:
        return None
    return PollState(
        feed=row.feed,
        url=row.url,
        cursor=row.cursor,
        cursor_start=row.cursor_start,
        window_start=row.window_start,
        horizon=row.horizon,
        started_at=row.started_at,
        owner=row.owner,
        lease_until=row.lease_until,
        caught_up_at=row.caught_up_at,
    )


def load_open_rows(connection: Connection, feed: str) -> list[OpenRow]:
    """Rows seen running and not yet finished, oldest first."""
    query = (
        select(poll_rows.c.job_history_id, poll_rows.c.job_id, poll_rows.c.operation_start)
        .where(poll_rows.c.feed == feed, poll_rows.c.state == "open")
        .order_by(poll_rows.c.job_history_id)
    )
    return [OpenRow(*row) for row in connection.execute(query)]


def _row(feed: str, candidate: PolledRow, state: str, now: float, **values: Any) -> dict[str, Any]:
    return {
        "feed": feed,
        "job_history_id": candidate.id,
        "job_id": candidate.job_id or str(uuid.UUID(int=0)),
        "state": state,
        "status": candidate.status if candidate.finished else None,
        "retry_streak": 0,
        "operation_start": candidate.started,
        "seen_at": now,
        "completion_id": None,
        **values,
    }


def write_page(
    connection: Connection,
    write: PageWrite,
    now: float,
    check_in: Callable[[Sequence[NewCompletion]], list[CheckinReceipt]],
) -> WriteOutcome:
    """One commit of the poller: its completions (through the check-in path), the rows
    it records, and its new position, all under the lease. Writes nothing if the
    lease was lost."""
    if not _fence(connection, write.feed, write.owner, write.lease, now):
        return WriteOutcome(lease_lost=True)
    state = connection.execute(
        select(poll_state.c.horizon, poll_state.c.cursor).where(poll_state.c.feed == write.feed)
    ).one()
    horizon = write.horizon if write.initialize else state.horizon
    plan = plan_rows(connection, write.feed, write.candidates, horizon)
    outcome = WriteOutcome(opened=len(plan.open), skipped=len(plan.skip), bad=list(plan.bad))
    reports = []
    for candidate, count in plan.emit:
        assert candidate.fields is not None
        fields = dict(candidate.fields)
        fields["current_retry_count"] = count
        reports.append(NewCompletion(fields, candidate.runs))
    receipts = check_in(reports) if reports else []
    inserts: list[dict[str, Any]] = []
    finishes: list[dict[str, Any]] = []

    def record(candidate: PolledRow, state_name: str, **values: Any) -> None:
        if candidate.id in plan.known:
            finishes.append(
                {
                    "b_feed": write.feed,
                    "b_id": candidate.id,
                    "state": state_name,
                    "status": values.get("status"),
                    "retry_streak": values.get("retry_streak", 0),
                    "completion_id": values.get("completion_id"),
                }
            )
        else:
            inserts.append(_row(write.feed, candidate, state_name, now, **values))

    for (candidate, count), receipt in zip(plan.emit, receipts, strict=True):
        status = candidate.status
        record(candidate, "done", status=status, retry_streak=count, completion_id=receipt.id)
        if receipt.duplicate:
            outcome.duplicates += 1
        else:
            outcome.created.append((candidate, receipt.id, count))
    for candidate, count in plan.skip:
        record(candidate, "skipped", status=candidate.status, retry_streak=count)
    for candidate in plan.open:
        inserts.append(_row(write.feed, candidate, "open", now))
    for candidate in plan.bad:
        record(candidate, "bad")
    execute_many(connection, _INSERT_ROW, inserts)
    if finishes:
        connection.execute(_FINISH_ROW, finishes)
    heads: dict[str, dict[str, Any]] = {}
    for candidate, count in [*plan.emit, *plan.skip]:
        job = candidate.job_id
        assert job is not None and candidate.status is not None
        if job not in heads or heads[job]["job_history_id"] < candidate.id:
            heads[job] = {
                "feed": write.feed,
                "job_id": job,
                "job_history_id": candidate.id,
                "status": candidate.status,
                "retry_streak": count,
            }
    if heads:
        statement = upsert_newer(
            connection,
            poll_jobs,
            ["feed", "job_id"],
            ["job_history_id", "status", "retry_streak"],
            "job_history_id",
        )
        connection.execute(statement, list(heads.values()))
    if write.gone:
        connection.execute(
            update(poll_rows)
            .where(
                poll_rows.c.feed == write.feed,
                poll_rows.c.job_history_id.in_(list(write.gone)),
                poll_rows.c.state == "open",
            )
            .values(state="gone")
        )
    _keep_awaited(connection, write)
    _move(connection, write, state.cursor, now)
    return outcome


def _keep_awaited(connection: Connection, write: PageWrite) -> None:
    if write.awaited:
        connection.execute(
            insert_ignore(connection, poll_gaps),
            [
                {"feed": write.feed, "job_history_id": identifier, "since": since}
                for identifier, since in write.awaited
            ],
        )
    if write.found:
        connection.execute(
            delete(poll_gaps).where(
                poll_gaps.c.feed == write.feed, poll_gaps.c.job_history_id.in_(list(write.found))
            )
        )
    if write.forget_awaited_before is not None:
        connection.execute(
            delete(poll_gaps).where(
                poll_gaps.c.feed == write.feed, poll_gaps.c.since < write.forget_awaited_before
            )
        )


def load_awaited(connection: Connection, feed: str) -> dict[int, float]:
    """The ids skipped between rows read and still looked for, with when each was first
    missed."""
    query = select(poll_gaps.c.job_history_id, poll_gaps.c.since).where(poll_gaps.c.feed == feed)
    return {identifier: since for identifier, since in connection.execute(query)}


def _move(connection: Connection, write: PageWrite, cursor: int | None, now: float) -> None:
    values: dict[str, Any] = {}
    if write.cursor is not None and (write.initialize or cursor is None or write.cursor > cursor):
        values["cursor"] = write.cursor
        if write.cursor_start is not None:
            values["cursor_start"] = write.cursor_start
    if write.window_start is not None:
        values["window_start"] = write.window_start
    if write.initialize:
        values["horizon"] = write.horizon
        values["started_at"] = now
    if write.caught_up_at is not None:
        values["caught_up_at"] = write.caught_up_at
    if values:
        connection.execute(
            update(poll_state).where(poll_state.c.feed == write.feed).values(**values)
        )


def prune(
    connection: Connection, feed: str, owner: str, lease: float, cutoff: float, now: float
) -> int:
    """Forget finished rows seen before ``cutoff`` below the oldest running row, keeping
    each job's newest (its retry chain); rows that ended before ``cutoff`` are skipped
    from then on, so a platform read from its start again does not repeat them."""
    if not _fence(connection, feed, owner, lease, now):
        return 0
    oldest_open = connection.execute(
        select(func.min(poll_rows.c.job_history_id)).where(
            poll_rows.c.feed == feed, poll_rows.c.state == "open"
        )
    ).scalar()
    newest = (
        select(func.max(poll_rows.c.job_history_id))
        .where(poll_rows.c.feed == feed)
        .group_by(poll_rows.c.job_id)
        .scalar_subquery()
    )
    condition = and_(
        poll_rows.c.feed == feed,
        poll_rows.c.state != "open",
        poll_rows.c.seen_at < cutoff,
        poll_rows.c.job_history_id.not_in(newest),
    )
    if oldest_open is not None:
        condition = and_(condition, poll_rows.c.job_history_id < oldest_open)
    count = connection.execute(delete(poll_rows).where(condition)).rowcount
    if count:
        connection.execute(
            update(poll_state)
            .where(
                poll_state.c.feed == feed,
                (poll_state.c.horizon.is_(None)) | (poll_state.c.horizon < cutoff),
            )
            .values(horizon=cutoff)
        )
    return int(count or 0)


def lease_holder(connection: Connection, feed: str) -> tuple[str | None, float]:
    """Who holds the lease of ``feed`` and until when (None, 0 if nobody)."""
    row = connection.execute(
        select(poll_state.c.owner, poll_state.c.lease_until).where(poll_state.c.feed == feed)
    ).first()
    return (row.owner, row.lease_until) if row is not None else (None, 0.0)


@dataclass(frozen=True, slots=True)
class Lease:
    """A request to take or renew ``feed``'s lease: ``dead`` holders lose it at once."""

    feed: str
    url: str
    owner: str
    seconds: float
    dead: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pruning:
    """Forget a feed's rows seen before ``cutoff`` (under its lease)."""

    feed: str
    owner: str
    lease: float
    cutoff: float


class PullStore:
    """What pull mode keeps in the database, each as a named operation: the lease, the
    position, the rows acted on, each page's completions, and the job type catalog."""

    def __init__(self, database: Database, checkins: CheckinWrites) -> None:
        self._db = database
        self._checkins = checkins
        self._page_receipts: list[CheckinReceipt] = []
        """Check-ins stored by the open transaction's pages (writer thread only)."""
        self._acquire: BatchOperation[Lease, bool] = BatchOperation(
            "poll_lease", _acquire_all, repeatable=True
        )
        self._release: BatchOperation[tuple[str, str], None] = BatchOperation(
            "poll_release", _release_all, repeatable=True
        )
        self._prune: BatchOperation[Pruning, int] = BatchOperation(
            "poll_prune", _prune_all, repeatable=True
        )
        self._page: BatchOperation[PageWrite, WriteOutcome] = BatchOperation(
            "poll_page", self._write_pages, self._after_pages, self._rollback_pages
        )
        self._catalog: BatchOperation[tuple[tuple[str, uuid.UUID], ...], int] = BatchOperation(
            "catalog", _save_catalogs, repeatable=True
        )

    async def acquire(self, lease: Lease) -> bool:
        """Take or renew the lease; False while another live node holds it."""
        return await self._db.write(self._acquire, lease)

    async def release(self, feed: str, owner: str) -> None:
        """Give the lease up (another node may take it at once)."""
        await self._db.write(self._release, (feed, owner))

    async def prune(self, pruning: Pruning) -> int:
        """Forget old rows (see :func:`prune`); returns how many."""
        return await self._db.write(self._prune, pruning)

    async def write_page(self, page: PageWrite) -> WriteOutcome:
        """Store one page: its completions (as check-ins are stored, handed to this
        process's worker when it has room), its rows and the position, under the lease."""
        return await self._db.write(self._page, page)

    async def state(self, feed: str) -> PollState | None:
        """The stored position and lease of ``feed``."""
        return await self._db.read(load_state, feed)

    async def open_rows(self, feed: str) -> list[OpenRow]:
        """Rows seen running, oldest first."""
        return await self._db.read(load_open_rows, feed)

    async def awaited(self, feed: str) -> dict[int, float]:
        """Ids skipped between rows read, still looked for (see :func:`load_awaited`)."""
        return await self._db.read(load_awaited, feed)

    async def holder(self, feed: str) -> tuple[str | None, float]:
        """Who holds the lease and until when."""
        return await self._db.read(lease_holder, feed)

    async def plan(
        self,
        feed: str,
        rows: Sequence[PolledRow],
        horizon: float | None,
        chain: dict[str, tuple[int, int, int]],
    ) -> RowPlan:
        """What a page would do, stored nothing (a dry run)."""
        return await self._db.read(plan_rows, feed, rows, horizon, chain)

    async def save_catalog(self, entries: Sequence[tuple[str, uuid.UUID]]) -> int:
        """Store the platform's job type catalog, (name, GUID) pairs."""
        return await self._db.write(self._catalog, tuple(entries))

    async def catalog(self) -> dict[str, uuid.UUID]:
        """Job type names to GUIDs, to resolve the history's names."""
        return await self._db.read(resolvable_names)

    def _write_pages(
        self, connection: Connection, pages: Sequence[PageWrite], now: float
    ) -> list[WriteOutcome]:
        def check_in(reports: Sequence[NewCompletion]) -> list[CheckinReceipt]:
            receipts = self._checkins.apply(connection, reports, now)
            self._page_receipts.extend(receipts)
            return receipts

        return [write_page(connection, page, now, check_in) for page in pages]

    def _after_pages(self, _outcomes: Sequence[WriteOutcome]) -> None:
        receipts, self._page_receipts = self._page_receipts, []
        self._checkins.after_commit(receipts)

    def _rollback_pages(self) -> None:
        self._page_receipts = []
        self._checkins.after_rollback()


def _acquire_all(connection: Connection, leases: Sequence[Lease], now: float) -> list[bool]:
    return [
        acquire_lease(connection, x.feed, x.url, x.owner, x.seconds, now, x.dead) for x in leases
    ]


def _release_all(
    connection: Connection, items: Sequence[tuple[str, str]], now: float
) -> list[None]:
    for feed, owner in items:
        release_lease(connection, feed, owner, now)
    return [None] * len(items)


def _prune_all(connection: Connection, items: Sequence[Pruning], now: float) -> list[int]:
    return [prune(connection, p.feed, p.owner, p.lease, p.cutoff, now) for p in items]


def _save_catalogs(
    connection: Connection, items: Sequence[tuple[tuple[str, uuid.UUID], ...]], now: float
) -> list[int]:
    return [save_synced(connection, entries, now) for entries in items]
