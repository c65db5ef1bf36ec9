"""The poller's store operations, on SQLite and on PostgreSQL: the lease, exactly-once
writes, retry counts from statuses as first seen, forgetting old rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.faults import AnswerToCommitLost
from support.storedb import StoreDb

from jobhooks.poll.rows import NIL, Candidate, completion_fields, parse_row
from jobhooks.store import Store
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.engine import connect
from jobhooks.store.migrate import upgrade
from jobhooks.store.pull import (
    Lease,
    PageWrite,
    PollState,
    WriteOutcome,
    acquire_lease,
    feed_of,
    load_open_rows,
    load_state,
    prune,
    write_page,
)
from jobhooks.store.records import PlannedRun
from jobhooks.store.tables import completions, poll_rows, runs

URL = "https://kf.example.com/KeyfactorAPI"
FEED = feed_of(URL)
AGENT = uuid.UUID("3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21")
NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreDb]:
    """A migrated database: SQLite in the test's directory, or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    engine = connect(url)
    upgrade(engine)
    try:
        yield StoreDb(engine)
    finally:
        engine.dispose()


def candidate(
    identifier: int, job: uuid.UUID, status: int, result: int = 4, end: str = "08:00:05"
) -> Candidate:
    """A row of the history as the poller prepares it (ended at ``end`` on 2027-01-15)."""
    row = parse_row(
        {
            "JobHistoryId": identifier,
            "AgentMachine": "orch01",
            "JobId": str(job),
            "JobType": "WinCertInventory",
            "OperationStart": "2027-01-15T08:00:00",
            "OperationEnd": f"2027-01-15T{end}" if status >= 3 else None,
            "Message": "",
            "Result": result,
            "Status": status,
        }
    )
    if not row.finished:
        return Candidate.of(row, identifier)
    fields = completion_fields(row, AGENT, "DOMAIN\\orch01", NIL, 0)
    return Candidate.of(row, identifier, fields, (PlannedRun("record", 5, 30.0),))


def write(
    db: StoreDb, owner: str, *candidates: Candidate, now: float = NOW, **position: Any
) -> WriteOutcome:
    with db.engine.begin() as connection:
        return write_page(
            connection,
            PageWrite(FEED, owner, 60.0, candidates, **position),
            now,
            lambda items: insert_checkins(connection, items, now),
        )


def _count(url: str) -> int:
    engine = connect(url)
    try:
        return StoreDb(engine).count(completions)
    finally:
        engine.dispose()


def lease(db: StoreDb, owner: str, now: float = NOW) -> bool:
    with db.engine.begin() as connection:
        return acquire_lease(connection, FEED, URL, owner, 60.0, now)


def state_of(db: StoreDb) -> PollState | None:
    with db.engine.connect() as connection:
        return load_state(connection, FEED)


def open_rows(db: StoreDb) -> list[int]:
    with db.engine.connect() as connection:
        return [row.id for row in load_open_rows(connection, FEED)]


def retry_counts(db: StoreDb) -> dict[int, int]:
    with db.engine.connect() as connection:
        query = select(completions.c.job_history_id, completions.c.current_retry_count)
        return dict(connection.execute(query).all())


def test_one_node_holds_the_lease_and_a_node_that_lost_it_writes_nothing(db: StoreDb) -> None:
    assert lease(db, "node-a")
    assert not lease(db, "node-b", now=NOW + 30)
    assert lease(db, "node-a", now=NOW + 30), "the holder renews"
    assert lease(db, "node-b", now=NOW + 91), "taken over once the lease ran out"
    job = uuid.uuid4()
    stale = write(db, "node-a", candidate(10, job, 3), cursor=10)
    assert stale.lease_lost
    assert db.count(completions) == 0 and db.count(poll_rows) == 0
    state = state_of(db)
    assert state is not None and state.owner == "node-b" and state.cursor is None
    fresh = write(db, "node-b", candidate(10, job, 3), cursor=10)
    assert [c.id for c, _id, _count in fresh.created] == [10]


def test_a_row_read_again_is_stored_once(db: StoreDb) -> None:
    assert lease(db, "node")
    job = uuid.uuid4()
    first = write(db, "node", candidate(1, job, 3), candidate(2, job, 2), cursor=2)
    again = write(db, "node", candidate(1, job, 3), candidate(1, job, 3), candidate(2, job, 2))
    assert (len(first.created), first.opened) == (1, 1)
    assert (len(again.created), again.opened) == (0, 0)
    assert open_rows(db) == [2]
    done = write(db, "node", candidate(2, job, 3))
    assert len(done.created) == 1
    assert open_rows(db) == []
    assert db.count(completions) == 2 and db.count(runs) == 2
    state = state_of(db)
    assert state is not None and state.cursor == 2, "the position never moves back"


def test_retry_counts_follow_statuses_as_first_seen_and_late_finishers(db: StoreDb) -> None:
    assert lease(db, "node")
    job = uuid.uuid4()
    write(db, "node", candidate(10, job, 5), candidate(11, job, 5), candidate(12, job, 2))
    write(db, "node", candidate(11, job, 4), candidate(13, job, 3, result=2))
    write(db, "node", candidate(12, job, 3), candidate(14, job, 5))
    write(db, "node", candidate(15, job, 3))
    assert retry_counts(db) == {10: 0, 11: 1, 13: 2, 12: 2, 14: 0, 15: 1}


def test_rows_that_ended_before_the_start_are_skipped_but_count_in_the_chain(
    db: StoreDb,
) -> None:
    assert lease(db, "node")
    job = uuid.uuid4()
    ended = candidate(20, job, 5).row
    assert ended is not None and ended.operation_end is not None
    start = ended.operation_end.timestamp() + 1
    outcome = write(db, "node", candidate(20, job, 5), initialize=True, cursor=20, horizon=start)
    assert (outcome.created, outcome.skipped) == ([], 1)
    later = write(db, "node", candidate(21, job, 3, end="09:00:00"))
    assert len(later.created) == 1
    assert retry_counts(db) == {21: 1}, "the skipped run ended CompletedWillRetry"


def test_forgetting_old_rows_keeps_running_ones_and_each_jobs_newest(db: StoreDb) -> None:
    assert lease(db, "node")
    recurring, other = uuid.uuid4(), uuid.uuid4()
    write(db, "node", *(candidate(i, recurring, 3) for i in range(1, 6)), candidate(6, other, 2))
    write(db, "node", candidate(7, other, 3), candidate(8, recurring, 3), now=NOW + 100)
    with db.engine.begin() as connection:
        forgotten = prune(connection, FEED, "node", 60.0, NOW + 50, NOW + 100)
        left = connection.execute(
            select(poll_rows.c.job_history_id).order_by(poll_rows.c.job_history_id)
        ).scalars()
        kept = list(left)
    assert forgotten == 5, "1-5: finished, seen before the cutoff, below the running row 6"
    assert kept == [6, 7, 8]
    state = state_of(db)
    assert state is not None and state.horizon == NOW + 50
    write(db, "node", candidate(9, recurring, 3, end="09:00:00"), now=NOW + 200)
    assert retry_counts(db)[9] == 0, "the chain continues from the job's newest run (8)"


@pytest.mark.parametrize("server_says", [True, False], ids=["asked", "unreachable"])
def test_a_page_whose_commit_answer_was_lost_counts_what_it_stored(
    pg_database: str, server_says: bool
) -> None:
    # Applied again, the page finds its rows done and counts nothing: the poller's log
    # line and metrics miss the completions it stored. PostgreSQL, asked, says the
    # first commit stands (unreachable, the page is applied again: nothing is stored
    # twice, but the counts miss).
    store = Store(pg_database)
    job = uuid.uuid4()
    page = PageWrite(FEED, "node", 60.0, (candidate(1, job, 3), candidate(2, job, 3)), cursor=2)

    async def write_one_page() -> WriteOutcome:
        assert await store.pull.acquire(Lease(FEED, URL, "node", 60.0))
        return await store.pull.write_page(page)

    try:
        with AnswerToCommitLost(store, pg_database, skip=1, server_says=server_says) as lost:
            outcome = asyncio.run(write_one_page())
        assert lost.left == 0, "the page's COMMIT answer was lost"
        state = asyncio.run(store.pull.state(FEED))
    finally:
        store.close()

    stored = _count(pg_database)
    assert stored == 2, "each row stored once"
    assert state is not None and state.cursor == 2
    created = [c.id for c, _id, _count in outcome.created]
    assert created == ([1, 2] if server_says else [])
