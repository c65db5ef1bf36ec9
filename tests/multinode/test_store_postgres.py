"""The Store on PostgreSQL: what only several nodes sharing one database rely on.

Claims that never overlap (``FOR UPDATE SKIP LOCKED``), a report stored by two
nodes at once, the notifications that wake other nodes, and the migrations.
What every database does alike (dedupe, retry counts, leases, outcomes,
replays, retention) is the store suite's, which runs on PostgreSQL too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.errors import SchemaOutOfDate
from jobhooks.store import Store
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.dialect import RELOAD_CHANNEL, RUNS_CHANNEL
from jobhooks.store.engine import connect
from jobhooks.store.migrate import current_revision, ensure_current, head_revision, upgrade
from jobhooks.store.queue import ClaimRequest, claim_runs
from jobhooks.store.records import CheckinReceipt, ClaimedRun, RunOutcome
from jobhooks.store.tables import completions, metadata, runs

T = TypeVar("T")
NOW = 1_800_000_000.0


@pytest.fixture
def store(pg_database: str) -> Iterator[Store]:
    """A Store (as an API node or worker opens it) on a fresh migrated database."""
    opened = Store(pg_database)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def db(pg_database: str) -> Iterator[StoreDb]:
    """The same kind of database, written one transaction at a time (explicit times)."""
    engine = connect(pg_database)
    try:
        yield StoreDb(engine)
    finally:
        engine.dispose()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _outcome(claimed: ClaimedRun, status: str, at: float, **fields: Any) -> RunOutcome:
    return RunOutcome(
        claimed.id, claimed.worker, claimed.number, status, at, at - 0.5, at, **fields
    )


# -- check-in -------------------------------------------------------------------


class _LocalWorker:
    """Counts the slots a Store asks this process's worker for, and the runs it delivers."""

    id = "local"

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.busy = 0
        self.delivered: list[ClaimedRun] = []
        self.lock = threading.Lock()

    def reserve(self, count: int) -> tuple[str, int]:
        with self.lock:
            granted = max(0, min(count, self.slots - self.busy)) if count >= 0 else count
            self.busy += granted
        return "local", max(granted, 0)

    def deliver(self, runs: Sequence[ClaimedRun]) -> None:
        with self.lock:
            self.delivered.extend(runs)


def test_two_nodes_storing_the_same_report_at_once_agree_on_one(pg_database: str) -> None:
    # Both transactions see no original; the second one's insert then meets the
    # first one's row. It must end as a duplicate answer (not an error), and the
    # slots it reserved for its local worker must be given back.
    nodes = [Store(pg_database), Store(pg_database)]
    workers = [_LocalWorker(slots=1000), _LocalWorker(slots=1000)]
    for node, worker in zip(nodes, workers, strict=True):
        node.set_local_worker(worker)
    answers: list[list[CheckinReceipt]] = [[], []]
    barrier = threading.Barrier(2)

    def node_thread(index: int) -> None:
        async def main() -> None:
            for n in range(40):
                barrier.wait(10)
                report = new_completion("mail", "webhook", key=f"race-{n}")
                answers[index].append(await nodes[index].check_in(report))

        run(main())

    threads = [threading.Thread(target=node_thread, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for node in nodes:
            node.close()
    assert [len(a) for a in answers] == [40, 40], "a check-in failed (see the log above)"
    for a, b in zip(*answers, strict=True):
        assert a.id == b.id and [r.id for r in a.runs] == [r.id for r in b.runs]
        assert sorted([a.duplicate, b.duplicate]) == [False, True]
    stored = StoreDb(connect(pg_database))
    try:
        assert stored.count(completions) == 40
        assert stored.count(runs) == 80
    finally:
        stored.engine.dispose()
    delivered = [run.id for worker in workers for run in worker.delivered]
    assert len(delivered) == len(set(delivered)) == 80
    assert [w.busy for w in workers] == [len(w.delivered) for w in workers], (
        "every slot reserved by a transaction that lost the race was given back"
    )


# -- claims ---------------------------------------------------------------------


def test_a_claim_skips_runs_another_open_claim_holds(db: StoreDb) -> None:
    [receipt] = db.apply(insert_checkins, [new_completion(*(f"h{n}" for n in range(10)))], NOW)
    stored = {r.id for r in receipt.runs}
    with db.engine.connect() as first, db.engine.connect() as second:
        with first.begin():
            [held] = claim_runs(first, [ClaimRequest("w1", 4, {}, 30.0)], NOW + 1)
            with second.begin():
                # Waiting for the first claim's row locks would be the bug; fail fast.
                second.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                [other] = claim_runs(second, [ClaimRequest("w2", 10, {}, 30.0)], NOW + 1)
        assert len(held) == 4 and len(other) == 6
        assert {r.id for r in held}.isdisjoint(r.id for r in other)
        assert {r.id for r in held} | {r.id for r in other} == stored
    assert {db.run(run_id).worker for run_id in stored} == {"w1", "w2"}


def test_stores_claiming_together_share_every_run_without_overlap(pg_database: str) -> None:
    setup = Store(pg_database)

    async def fill() -> None:
        await asyncio.gather(*(setup.check_in(new_completion("mail")) for _ in range(300)))

    try:
        run(fill())
    finally:
        setup.close()
    taken: dict[str, list[str]] = {}

    def claimer(name: str) -> None:
        node = Store(pg_database)

        async def main() -> None:
            mine = taken.setdefault(name, [])
            while claimed := await node.claim(name, 7, {"mail": 60.0}):
                mine.extend(r.id for r in claimed)

        try:
            run(main())
        finally:
            node.close()

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [run_id for ids in taken.values() for run_id in ids]
    assert len(every) == len(set(every)) == 300, {name: len(ids) for name, ids in taken.items()}
    assert all(taken.values()), "each claimer got some"


# -- notifications ------------------------------------------------------------------


def _listening(url: str, *channels: str) -> psycopg.Connection[Any]:
    connection = psycopg.connect(url, autocommit=True)
    for channel in channels:
        connection.execute(f"LISTEN {channel}")
    return connection


def _notices(connection: psycopg.Connection[Any], timeout: float = 2.0) -> list[tuple[str, str]]:
    return [(n.channel, n.payload) for n in connection.notifies(timeout=timeout, stop_after=1)]


def test_check_ins_with_runs_and_announcements_notify_other_nodes(
    store: Store, pg_database: str
) -> None:
    listener = _listening(pg_database, RUNS_CHANNEL, RELOAD_CHANNEL)
    try:
        run(store.check_in(new_completion()))
        assert _notices(listener, 0.5) == [], "nothing to run, nobody to wake"
        run(store.check_in(new_completion("mail")))
        assert _notices(listener) == [(RUNS_CHANNEL, "")]
        run(store.announce(RELOAD_CHANNEL, "node-1"))
        assert _notices(listener) == [(RELOAD_CHANNEL, "node-1")]
    finally:
        listener.close()


# -- schema -------------------------------------------------------------------------


def test_the_migrations_build_the_tables_module_schema_on_postgresql(
    pg_empty_database: str,
) -> None:
    engine = connect(pg_empty_database)
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    try:
        with pytest.raises(SchemaOutOfDate, match="jobhooks db upgrade"):
            ensure_current(engine)
        upgrade(engine)
        ensure_current(engine)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
