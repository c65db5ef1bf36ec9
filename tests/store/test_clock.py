"""Time on several machines: each node reads the database server's clock, so a node whose
own clock is off by seconds is neither judged gone nor sees due runs as not due."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from jobhooks.store import Store
from jobhooks.store.clock import DatabaseClock
from jobhooks.store.engine import connect
from jobhooks.store.migrate import upgrade
from jobhooks.store.nodes import NodeIdentity

BEHIND = 12.0
"""Seconds the clock of the "other machine" runs behind (more than a heartbeat's staleness)."""


def test_the_clock_adopts_the_servers_time_on_postgresql(pg_database: str) -> None:
    clock = DatabaseClock(lambda: time.time() - BEHIND)
    engine = connect(pg_database, pool_size=1)
    try:
        with engine.connect() as connection:
            clock.measure(connection)
    finally:
        engine.dispose()

    assert abs(clock() - time.time()) < 0.5
    assert abs(clock.offset - BEHIND) < 0.5


def test_on_sqlite_every_process_shares_one_clock(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'x.db'}")
    clock = DatabaseClock(lambda: 100.0)
    try:
        with engine.connect() as connection:
            clock.measure(connection)
    finally:
        engine.dispose()

    assert clock() == 100.0


def test_a_node_whose_clock_runs_behind_is_not_taken_for_gone(pg_database: str) -> None:
    engine = connect(pg_database, pool_size=1)
    upgrade(engine)
    engine.dispose()
    behind = Store(pg_database, clock=DatabaseClock(lambda: time.time() - BEHIND))
    here = Store(pg_database)
    slow = NodeIdentity("other-machine:1:slow", "other-machine", "another boot", 1, None)

    async def scenario() -> list[str]:
        await behind.start_heartbeat(slow, lambda: True)
        await here.start_heartbeat(NodeIdentity.of_this_process(), lambda: True)
        return await here.dead_nodes()

    try:
        dead = asyncio.run(scenario())
    finally:
        behind.close()
        here.close()
    assert slow.id not in dead, "its heartbeat is fresh by the server's clock"
