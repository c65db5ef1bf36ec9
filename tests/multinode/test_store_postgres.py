"""The Store on PostgreSQL: what several nodes sharing one database rely on.

Dedupe and retry counts as on SQLite; claims that never overlap (``FOR UPDATE
SKIP LOCKED``); lost leases; outcomes, replays and retention; a report stored
by two nodes at once; and the notifications that wake other nodes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from support.reports import AGENT_B, new_completion
from support.storedb import StoreDb

from jobhooks.errors import SchemaOutOfDate, StoreError
from jobhooks.store import Store
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.engine import connect
from jobhooks.store.facade import RELOAD_CHANNEL, RUNS_CHANNEL
from jobhooks.store.migrate import current_revision, ensure_current, head_revision, upgrade
from jobhooks.store.records import CheckinReceipt, ClaimedRun, RunOutcome
from jobhooks.store.runs import ClaimRequest, claim_runs
from jobhooks.store.tables import attempts, completions, job_streaks, metadata, runs

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


def test_repeats_by_idempotency_key_or_job_history_id_answer_the_original(store: Store) -> None:
    async def main() -> list[CheckinReceipt]:
        return [
            await store.check_in(new_completion("mail", key="k-1", job_history_id=7)),
            await store.check_in(new_completion("mail", key="k-1")),
            await store.check_in(new_completion("mail", job_history_id=7)),
            await store.check_in(new_completion("mail", key="k-1", agent_id=AGENT_B)),
            await store.check_in(new_completion("mail", job_history_id=7, agent_id=AGENT_B)),
            await store.check_in(new_completion("mail")),
            await store.check_in(new_completion("mail")),
        ]

    first, by_key, by_history, other_key, other_history, plain, plain_again = run(main())
    assert not first.duplicate
    for repeat in (by_key, by_history):
        assert repeat.duplicate and repeat.id == first.id
        assert [r.id for r in repeat.runs] == [r.id for r in first.runs]
    assert not other_key.duplicate and not other_history.duplicate, "keys belong to an agent"
    assert other_key.id != first.id and other_history.id not in (first.id, other_key.id)
    assert not plain.duplicate and not plain_again.duplicate and plain.id != plain_again.id
    db = StoreDb(store.engine)
    assert db.count(completions) == 5
    assert db.count(runs) == 5


def test_repeats_within_one_group_commit_answer_the_first(store: Store) -> None:
    async def main() -> list[CheckinReceipt]:
        reports = [new_completion("mail", key="same") for _ in range(20)]
        reports += [new_completion("mail") for _ in range(200)]
        return list(await asyncio.gather(*(store.check_in(report) for report in reports)))

    receipts = run(main())
    repeated, unique = receipts[:20], receipts[20:]
    assert len({r.id for r in repeated}) == 1 and sum(not r.duplicate for r in repeated) == 1
    assert len({r.id for r in unique}) == 200
    assert store.writer.batches < 220 / 4, "check-ins waiting together commit together"
    assert StoreDb(store.engine).count(completions) == 201


def test_an_omitted_retry_count_counts_consecutive_failures_of_the_job(store: Store) -> None:
    job = "5a7c1d9b-0000-4000-8000-00000000a11d"
    results = ["Failure", "Failure", "Failure", "Success", "Failure", "Failure"]

    async def main() -> list[CheckinReceipt]:
        receipts = []
        for n, result in enumerate(results):
            report = new_completion(job_id=job, job_result=result, current_retry_count=None)
            receipts.append(await store.check_in(report))
            if n == 1:  # another failure, then its repeat (which does not count again)
                again = new_completion(job_id=job, job_history_id=1, current_retry_count=None)
                receipts.append(await store.check_in(again))
                receipts.append(await store.check_in(again))
        return receipts

    receipts = [receipt for receipt in run(main()) if not receipt.duplicate]
    assert [receipt.current_retry_count for receipt in receipts] == [0, 1, 2, 3, 4, 0, 1]
    stored = StoreDb(store.engine).completion(receipts[-1].id)
    assert (stored.current_retry_count, stored.retry_count_computed) == (1, True)
    with store.engine.connect() as connection:
        streak = connection.execute(select(job_streaks.c.consecutive_failures)).scalar_one()
    assert streak == 2


class _LocalWorker:
    """Counts the slots a Store asks this process's worker for, and the runs it delivers."""

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


def test_an_expired_lease_is_a_lost_attempt_and_the_late_report_only_adds_history(
    store: Store,
) -> None:
    async def main() -> tuple[ClaimedRun, ClaimedRun]:
        receipt = await store.check_in(new_completion("mail", max_attempts=3))
        [first] = await store.claim("w1", 10, {"mail": 0.2})
        assert await store.claim("w2", 10, {"mail": 30.0}) == [], "held under its lease"
        await asyncio.sleep(0.3)
        [second] = await store.claim("w2", 10, {"mail": 30.0})
        assert first.id == second.id == receipt.runs[0].id
        await store.finish(_outcome(second, "succeeded", time.time()))
        await store.finish(_outcome(first, "failed", time.time(), error="too late"))
        return first, second

    first, second = run(main())
    assert (first.attempt, first.number, second.attempt, second.number) == (1, 1, 2, 2)
    db = StoreDb(store.engine)
    row = db.run(first.id)
    assert (row.status, row.worker, row.total_attempts) == ("succeeded", None, 2)
    history = [(a.number, a.worker, a.outcome) for a in db.attempts(first.id)]
    assert history == [(1, "w1", "failed"), (2, "w2", "succeeded")]
    assert store.next_due() is None


def test_runs_whose_leases_expired_with_no_attempts_left_are_dead(db: StoreDb) -> None:
    [receipt] = db.apply(insert_checkins, [new_completion("mail", max_attempts=1)], NOW)
    db.apply(claim_runs, [ClaimRequest("w1", 10, {"mail": 5.0}, 30.0)], NOW)
    [claimed] = db.apply(claim_runs, [ClaimRequest("w2", 10, {"mail": 5.0}, 30.0)], NOW + 6)
    assert claimed == []
    row = db.run(receipt.runs[0].id)
    assert (row.status, row.worker) == ("dead", None)
    assert [a.outcome for a in db.attempts(row.id)] == ["lost"]


# -- outcomes, replays, retention -------------------------------------------------


def test_finish_replay_and_purge(store: Store) -> None:
    async def main() -> None:
        ok = await store.check_in(new_completion("mail"))
        doomed = await store.check_in(new_completion("mail", max_attempts=1))
        retried = await store.check_in(new_completion("mail"))
        claimed = {r.completion_id: r for r in await store.claim("w1", 10, {"mail": 30.0})}
        now = time.time()
        await store.finish(_outcome(claimed[ok.id], "succeeded", now))
        await store.finish(_outcome(claimed[doomed.id], "dead", now, error="boom"))
        await store.finish(_outcome(claimed[retried.id], "failed", now + 3600, error="later"))
        assert store.backlog()[0] == 1, "only the failed run still waits"

        dead_run = doomed.runs[0].id
        assert await store.replay(dead_run) == "dead"
        assert await store.replay(dead_run) == "pending", "an open run is left as it is"
        assert await store.replay("01a00000-0000-7000-8000-000000000000") is None
        [again] = await store.claim("w2", 10, {"mail": 30.0})
        assert (again.id, again.attempt, again.number) == (dead_run, 1, 2)
        await store.finish(_outcome(again, "dead", time.time()))
        assert await store.replay_dead("mail") == 1
        assert await store.replay_dead("other") == 0

        cutoff = time.time() + 1
        assert await store.purge(cutoff) == 1, "only the completion whose runs all finished"
        assert {c.id for c in await store.read(_completion_ids)} == {doomed.id, retried.id}

    run(main())
    db = StoreDb(store.engine)
    assert db.count(attempts) == 3
    assert db.count(runs) == 2


def _completion_ids(engine: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(completions.c.id)))


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


def test_a_failed_write_answers_its_caller_with_a_store_error(store: Store) -> None:
    # A foreign key violation fails the group and then the write alone: its caller
    # gets the error, the writes grouped with it are committed.
    missing = _outcome(
        ClaimedRun("01a00000-0000-7000-8000-00000000dead", "mail", "c", 1, 1, 1, {}, "w1"),
        "succeeded",
        time.time(),
    )

    async def main() -> tuple[BaseException | None, CheckinReceipt]:
        results = await asyncio.gather(
            store.finish(missing), store.check_in(new_completion("mail")), return_exceptions=True
        )
        error, receipt = results
        assert isinstance(receipt, CheckinReceipt)
        return (error if isinstance(error, BaseException) else None), receipt

    error, receipt = run(main())
    assert isinstance(error, StoreError)
    assert StoreDb(store.engine).count(completions, completions.c.id == receipt.id) == 1


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
