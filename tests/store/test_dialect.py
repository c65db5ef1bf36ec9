"""Lists bound as one parameter: the same answers on SQLite and PostgreSQL; what became of
a PostgreSQL transaction, asked from another connection."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, select
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store.checkins import insert_checkins
from jobhooks.store.dialect import (
    bind_list,
    bind_pairs,
    end_transaction,
    one_of,
    pairs_from,
    transaction_fate,
    transaction_id,
)
from jobhooks.store.engine import connect
from jobhooks.store.tables import completions

NOW = 1_800_000_000.0


def _ids_among(connection: Connection, wanted: list[str]) -> list[str]:
    dialect = connection.dialect.name
    query = select(completions.c.id).where(one_of(dialect, completions.c.id, "ids"))
    return list(connection.execute(query, {"ids": bind_list(dialect, wanted)}).scalars())


def test_a_listed_value_matches_only_itself_not_a_stored_prefix_of_it(db: StoreDb) -> None:
    [stored] = db.apply(insert_checkins, [new_completion()], NOW)

    # Ids are 36 characters: a longer value must not be cut to the column's length.
    assert db.read(_ids_among, [stored.id]) == [stored.id]
    assert db.read(_ids_among, [stored.id + "-and-more", "unknown"]) == []
    assert db.read(_ids_among, []) == []


def test_pairs_match_on_both_values(db: StoreDb) -> None:
    [stored] = db.apply(insert_checkins, [new_completion(job_history_id=2**63 - 1)], NOW)
    agent = db.read(lambda c: c.execute(select(completions.c.agent_id)).scalar_one())

    def found(connection: Connection, pairs: list[tuple[str, int]]) -> list[str]:
        dialect = connection.dialect.name
        wanted = pairs_from(
            dialect, "pairs", ("agent", "history"), completions.c.job_history_id.type
        )
        query = (
            select(completions.c.id)
            .select_from(wanted)
            .join(
                completions,
                (completions.c.agent_id == wanted.c.agent)
                & (completions.c.job_history_id == wanted.c.history),
            )
        )
        return list(connection.execute(query, bind_pairs(dialect, "pairs", pairs)).scalars())

    assert db.read(found, [(agent, 2**63 - 1)]) == [stored.id]
    assert db.read(found, [(agent, 2**63 - 2), (agent + "x", 2**63 - 1)]) == []


@pytest.mark.parametrize("version", [(15, 0), (12, 0)], ids=["xid8", "txid"])
def test_another_connection_tells_whether_a_transaction_committed(
    pg_database: str, version: tuple[int, int]
) -> None:
    # PostgreSQL 13 and newer name transactions by xid8 (pg_xact_status); older ones
    # only have txid_status, which newer servers keep.
    engine = connect(pg_database)
    engine.dialect.server_version_info = version
    try:
        with engine.connect() as asker, engine.connect() as writer:
            ids = {}
            for ending in ("commit", "rollback", "open"):
                writer.begin()
                writer.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS t (x int)")
                ids[ending] = transaction_id(writer)
                if ending == "commit":
                    writer.commit()
                elif ending == "rollback":
                    writer.rollback()
            fates = {ending: transaction_fate(asker, xid) for ending, xid in ids.items()}
            writer.rollback()
            after = transaction_fate(asker, ids["open"])
    finally:
        engine.dispose()

    assert len(set(ids.values())) == 3
    assert fates == {"commit": "committed", "rollback": "aborted", "open": "in progress"}
    assert after == "aborted"


def test_sqlite_has_no_transaction_to_ask_about(tmp_path: Path) -> None:
    # Its COMMIT is a call that returns or raises: there is nothing to ask afterwards.
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.begin() as connection:
            assert transaction_id(connection) is None
    finally:
        engine.dispose()


def _until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {within} s"
        time.sleep(0.02)


def test_a_waiting_session_is_ended_at_once_and_a_committing_one_only_when_asked(
    pg_database: str,
) -> None:
    engine = connect(pg_database)

    def state_of(connection: Connection, transaction: int) -> str | None:
        query = "SELECT state FROM pg_stat_activity WHERE backend_xid = %(xid)s::text::xid"
        state = connection.exec_driver_sql(query, {"xid": transaction}).scalar()
        connection.rollback()
        return None if state is None else str(state)

    def fate_of(connection: Connection, transaction: int) -> str | None:
        fate = transaction_fate(connection, transaction)
        connection.rollback()
        return fate

    try:
        with engine.connect() as asker, engine.connect() as idle, engine.connect() as busy:
            idle.begin()
            waiting = transaction_id(idle)  # then nothing: it waits for its client
            busy.begin()
            working = transaction_id(busy)
            assert waiting is not None and working is not None

            def sleep_there() -> None:
                with contextlib.suppress(Exception):  # ended under it
                    busy.exec_driver_sql("SELECT pg_sleep(30)")

            sleeper = threading.Thread(target=sleep_there)
            sleeper.start()
            _until(lambda: state_of(asker, working) == "active", "sleeping")

            assert not end_transaction(asker, working, idle_only=True), "busy: left alone"
            assert state_of(asker, working) == "active"
            assert end_transaction(asker, waiting, idle_only=True)
            assert end_transaction(asker, working, idle_only=False)
            sleeper.join(10)
            idle.invalidate()  # ended by the server: nothing to give back to the pool
            busy.invalidate()
            for transaction in (waiting, working):
                _until(lambda t=transaction: fate_of(asker, t) == "aborted", "rolled back")
    finally:
        engine.dispose()

    assert not sleeper.is_alive()
