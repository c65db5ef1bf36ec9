"""The group-commit writer's connection: kept while writes come, checked again after a
quiet while, so a database server that closed it does not fail a write."""

from __future__ import annotations

import asyncio

import psycopg
from support.clock import ManualClock
from support.reports import new_completion

from jobhooks.store import Store
from jobhooks.store.writer import KEEP_CONNECTION


def _close_every_connection_but_this(url: str) -> int:
    """What a PostgreSQL restart or an idle timeout does to the store's connections."""
    with psycopg.connect(url, autocommit=True) as admin:
        closed = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert closed is not None
    return int(closed[0])


def test_a_connection_the_server_closed_while_quiet_is_replaced_before_a_write(
    pg_database: str,
) -> None:
    clock = ManualClock()
    store = Store(pg_database, clock=clock)
    try:
        asyncio.run(store.check_in(new_completion()))
        assert _close_every_connection_but_this(pg_database) >= 1
        clock.advance(KEEP_CONNECTION + 1)

        receipt = asyncio.run(store.check_in(new_completion()))

        assert not receipt.duplicate
        health = store.health
        assert health.ok and health.last_failure is None, health.last_problem
        assert store.unready() is None
    finally:
        store.close()
