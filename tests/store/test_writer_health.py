"""When the store says it is ready again after failed writes: never flapping in and out of
a load balancer while small writes pass and large ones fail (a nearly full disk)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from support.clock import ManualClock
from support.reports import new_completion

from jobhooks.errors import StoreError
from jobhooks.store import Store
from jobhooks.store.writer import MAX_RECOVERY, RECOVERY, BatchOperation


def _full_disk(_connection: Connection, payloads: Sequence[None], _now: float) -> list[None]:
    raise OperationalError("INSERT ...", None, Exception("database or disk is full"))


FAILS = BatchOperation("fails", _full_disk)


def _fail(store: Store) -> None:
    async def write() -> None:
        with pytest.raises(StoreError, match="the disk holding the database is full"):
            await store.writer.call(FAILS, None)

    asyncio.run(write())


def _commit(store: Store) -> None:
    """A small write that passes (a heartbeat, a short report)."""
    asyncio.run(store.check_in(new_completion()))


def test_failures_that_come_back_keep_the_node_out_longer_each_time(tmp_path: Path) -> None:
    clock = ManualClock()
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    try:
        _fail(store)
        _commit(store)
        assert store.unready() is not None, "a small write passing does not make it ready"
        clock.advance(RECOVERY + 1)
        assert store.unready() is None, "ready again after a quiet while"

        _fail(store)  # the load balancer sent traffic again, and it failed again
        _commit(store)
        clock.advance(RECOVERY + 1)
        assert "ready again after 20 s" in (store.unready() or "")
        clock.advance(RECOVERY)
        assert store.unready() is None

        for _ in range(8):
            _fail(store)
            _commit(store)
            clock.advance(MAX_RECOVERY - 1)
        assert store.unready() is not None, "capped, but still out"
        clock.advance(2)
        assert store.unready() is None

        clock.advance(2 * MAX_RECOVERY)  # long quiet: the next failure starts afresh
        _fail(store)
        _commit(store)
        clock.advance(RECOVERY + 1)
        assert store.unready() is None
    finally:
        store.close()
