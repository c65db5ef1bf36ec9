"""The Store object: every write through one group-commit writer, answered after its commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from pg import PostgresServer
from psycopg import sql
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from support.clock import ManualClock
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.errors import DatabaseLost, StoreError
from jobhooks.store import Store
from jobhooks.store.engine import connect
from jobhooks.store.nodes import HEARTBEAT_EVERY, STALE_AFTER, NodeIdentity, beat
from jobhooks.store.records import CheckinReceipt, RunOutcome, RunStatus
from jobhooks.store.tables import completions, nodes, runs


def test_concurrent_check_ins_share_commits_and_dedupe_within_a_batch(store_url: str) -> None:
    store = Store(store_url)

    async def main() -> list[CheckinReceipt]:
        reports = [new_completion("mail") for _ in range(200)]
        reports += [new_completion("mail", key="same-key") for _ in range(20)]
        return await asyncio.gather(*(store.check_in(item) for item in reports))

    try:
        receipts = asyncio.run(main())
        unique, repeated = receipts[:200], receipts[200:]
        assert len({r.id for r in unique}) == 200
        assert len({r.id for r in repeated}) == 1
        assert sum(not r.duplicate for r in repeated) == 1
        assert store.writer.items == 220
        assert store.writer.batches < 220 / 4, "check-ins waiting together commit together"
    finally:
        store.close()
    engine = connect(store_url)
    try:
        db = StoreDb(engine)
        assert db.count(completions) == 201
        assert db.count(runs) == 201
    finally:
        engine.dispose()


def test_claim_finish_and_replay_through_the_store(store_url: str) -> None:
    store = Store(store_url)

    async def main() -> None:
        receipt = await store.check_in(new_completion("mail", max_attempts=1))
        [run] = await store.claim("w1", 10, {"mail": 5.0})
        assert run.id == receipt.runs[0].id
        assert store.next_due() is not None, "a held run is due again when its lease ends"
        await store.finish(
            [RunOutcome(run.id, "w1", run.number, "dead", 0.0, 1.0, 2.0, error="boom")]
        )
        assert store.next_due() is None
        assert await store.replay(run.id) == "dead"
        assert await store.replay("missing") is None
        assert store.reads.backlog()[0] == 1
        [again] = await store.claim("w2", 10, {})
        assert (again.id, again.number) == (run.id, 2)

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_a_failed_write_answers_its_caller_with_a_store_error(store_url: str) -> None:
    # A foreign key violation fails the group and then the write alone: its caller
    # gets the error, the writes grouped with it are committed.
    store = Store(store_url)
    missing = RunOutcome(
        "01a00000-0000-7000-8000-00000000dead", "w1", 1, RunStatus.SUCCEEDED, 1.0, 0.5, 1.0
    )

    async def main() -> tuple[BaseException | None, CheckinReceipt]:
        error, receipt = await asyncio.gather(
            store.finish([missing]), store.check_in(new_completion("mail")), return_exceptions=True
        )
        assert isinstance(receipt, CheckinReceipt)
        return (error if isinstance(error, BaseException) else None), receipt

    try:
        error, receipt = asyncio.run(main())
    finally:
        store.close()
    assert isinstance(error, StoreError)
    assert "the database refused the statement" in str(error), "plain words, not the driver's"
    engine = connect(store_url)
    try:
        assert StoreDb(engine).count(completions, completions.c.id == receipt.id) == 1
    finally:
        engine.dispose()


def test_a_database_that_goes_back_in_time_refuses_every_write(store_url: str) -> None:
    """An older copy put in the database's place (a backup restored under a running
    process) shows as an older heartbeat of this process than the one it wrote last."""
    store = Store(store_url)
    node = NodeIdentity.of_this_process()

    async def main() -> None:
        await store.start_heartbeat(node, lambda: True)
        await store.check_in(new_completion("mail"))
        engine = connect(store_url, pool_size=1)
        try:
            with engine.begin() as connection:  # what the older copy holds
                connection.execute(
                    update(nodes).where(nodes.c.id == node.id).values(heartbeat_at=1.0)
                )
        finally:
            engine.dispose()
        deadline = time.monotonic() + 3 * HEARTBEAT_EVERY
        while store.unready() is None:
            assert time.monotonic() < deadline, "the next heartbeat did not notice"
            await asyncio.sleep(0.05)
        with pytest.raises(DatabaseLost):
            await store.check_in(new_completion("mail"))

    try:
        asyncio.run(main())
        assert "went back in time" in (store.unready() or "")
    finally:
        store.close()


def _allow_connections(server: PostgresServer, database: str, allow: bool) -> None:
    """Let sessions into ``database``, or refuse them and end those there (an outage)."""
    with server.admin() as connection:
        connection.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allow)
            )
        )
        if not allow:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5 * HEARTBEAT_EVERY
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_after_an_outage_of_the_database_its_nodes_are_not_taken_for_gone_at_once(
    pg_server: PostgresServer, pg_database: str
) -> None:
    """Every node is cut off alike: the first one back must not take the others' runs
    (and run them again) before they could beat again; one still silent after a whole
    heartbeat's staleness since it came back is gone."""
    database = make_url(pg_database).database or ""
    clock = ManualClock()
    store = Store(pg_database, clock=clock, elapsed=clock)
    other = NodeIdentity("other-machine:1:cut-off", "other-machine", "another boot", 1, None)
    me = NodeIdentity.of_this_process()

    def beaten_at(node: NodeIdentity) -> float | None:
        engine = connect(pg_database, pool_size=1)
        try:
            with engine.connect() as connection:
                query = select(nodes.c.heartbeat_at).where(nodes.c.id == node.id)
                return connection.execute(query).scalar()
        finally:
            engine.dispose()

    async def main() -> None:
        await store.check_in(new_completion("mail"))
        [held] = await store.claim(other.id, 1, {"mail": 60.0})
        engine = connect(pg_database, pool_size=1)
        try:
            with engine.begin() as connection:  # the other node, alive until the outage
                beat(connection, other, clock(), clock())
        finally:
            engine.dispose()
        await store.start_heartbeat(me, lambda: True)
        assert await store.dead_nodes() == []

        _allow_connections(pg_server, database, False)
        try:
            clock.advance(STALE_AFTER + 3)  # the outage lasts longer than a heartbeat's staleness
            await _until(lambda: not store.health.ok, "a heartbeat to fail")
        finally:
            _allow_connections(pg_server, database, True)
        await _until(lambda: beaten_at(me) == clock(), "the heartbeat after the outage")
        assert await store.dead_nodes() == [], "the other node had no chance to beat yet"
        assert await store.claim(me.id, 10, {"mail": 60.0}) == []

        back = clock()
        while clock() - back <= STALE_AFTER:  # still silent a staleness after this one's return
            clock.advance(HEARTBEAT_EVERY * 2)
            await _until(lambda: beaten_at(me) == clock(), "a heartbeat")
        assert await store.dead_nodes() == [other.id]
        [taken] = await store.claim(me.id, 10, {"mail": 60.0}, [other.id])
        assert (taken.id, taken.number) == (held.id, 2)

    try:
        asyncio.run(main())
    finally:
        store.close()
