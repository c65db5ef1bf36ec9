"""The Store object: every write through one group-commit writer, answered after its commit."""

from __future__ import annotations

import asyncio

from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store import Store
from jobhooks.store.records import CheckinReceipt, RunOutcome
from jobhooks.store.tables import completions, runs


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
        db = StoreDb(store.engine)
        assert db.count(completions) == 201
        assert db.count(runs) == 201
    finally:
        store.close()


def test_claim_finish_and_replay_through_the_store(store_url: str) -> None:
    store = Store(store_url)

    async def main() -> None:
        receipt = await store.check_in(new_completion("mail", max_attempts=1))
        [run] = await store.claim("w1", 10, {"mail": 5.0})
        assert run.id == receipt.runs[0].id
        assert store.next_due() is not None, "a held run is due again when its lease ends"
        await store.finish(
            RunOutcome(run.id, "w1", run.number, "dead", 0.0, 1.0, 2.0, error="boom")
        )
        assert store.next_due() is None
        assert await store.replay(run.id) == "dead"
        assert await store.replay("missing") is None
        assert store.backlog()[0] == 1
        [again] = await store.claim("w2", 10, {})
        assert (again.id, again.number) == (run.id, 2)

    try:
        asyncio.run(main())
    finally:
        store.close()
