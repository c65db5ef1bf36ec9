"""The Store object: every write through one group-commit writer, answered after its commit."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import update
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.errors import DatabaseLost, StoreError
from jobhooks.store import Store
from jobhooks.store.engine import connect
from jobhooks.store.nodes import HEARTBEAT_EVERY, NodeIdentity
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
