"""What became of a PostgreSQL transaction, asked from another connection; the session
it ran in, found and ended."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from jobhooks.store.engine import connect
from jobhooks.store.fate import (
    end_session,
    session_of,
    session_state,
    transaction_fate,
    transaction_id,
)


@pytest.fixture
def engine(pg_database: str) -> Iterator[Engine]:
    engine = connect(pg_database)
    try:
        yield engine
    finally:
        engine.dispose()


def _until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {within} s"
        time.sleep(0.02)


def _write(connection: Connection) -> int:
    """Open a transaction that writes (so it has an id) and return its id."""
    connection.begin()
    connection.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS t (x int)")
    connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    transaction = transaction_id(connection)
    assert transaction is not None
    return transaction


@pytest.mark.parametrize("version", [(15, 0), (12, 0)], ids=["xid8", "txid"])
def test_another_connection_tells_whether_a_transaction_committed(
    engine: Engine, version: tuple[int, int]
) -> None:
    # PostgreSQL 13 and newer name transactions by xid8 (pg_xact_status); older ones
    # only have txid_status, which newer servers keep.
    engine.dialect.server_version_info = version
    with engine.connect() as asker, engine.connect() as writer:
        writer.begin()
        assert transaction_id(writer) is None, "nothing written yet: no id"
        writer.rollback()
        ids = {}
        for ending in ("commit", "rollback", "open"):
            ids[ending] = _write(writer)
            if ending == "commit":
                writer.commit()
            elif ending == "rollback":
                writer.rollback()
        fates = {ending: transaction_fate(asker, xid) for ending, xid in ids.items()}
        writer.rollback()
        after = transaction_fate(asker, ids["open"])
        future = transaction_fate(asker, ids["open"] + 1_000_000)

    assert len(set(ids.values())) == 3
    assert fates == {"commit": "committed", "rollback": "aborted", "open": "in progress"}
    assert after == "aborted"
    assert future == "aborted", "an id the server never reached was never committed"


def test_sqlite_has_no_session_or_transaction_to_ask_about(tmp_path: Path) -> None:
    # Its COMMIT is a call that returns or raises: there is nothing to ask afterwards.
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.begin() as connection:
            assert session_of(connection) is None
            assert transaction_id(connection) is None
    finally:
        engine.dispose()


def test_a_session_is_known_by_its_process_and_start(engine: Engine) -> None:
    with engine.connect() as asker, engine.connect() as other:
        session = session_of(other)
        assert session is not None
        assert session_of(other) is session, "asked once per connection"
        pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        other.rollback()
        assert session.pid == pid
        assert session_state(asker, session) == "idle"
        older = replace(session, started="2000-01-01T00:00:00+00:00")
        assert session_state(asker, older) is None, "the same process id, another session"


def test_a_waiting_session_is_ended_at_once_and_a_committing_one_only_when_asked(
    engine: Engine,
) -> None:
    with engine.connect() as asker, engine.connect() as idle, engine.connect() as busy:
        waiting, working = session_of(idle), session_of(busy)
        assert waiting is not None and working is not None
        idle.rollback()
        busy.rollback()
        _write(idle)  # then nothing: it waits for its client
        busy_xid = _write(busy)

        def sleep_there() -> None:
            with contextlib.suppress(Exception):  # ended under it
                busy.exec_driver_sql("SELECT pg_sleep(30)")

        sleeper = threading.Thread(target=sleep_there)
        sleeper.start()
        _until(lambda: session_state(asker, working) == "active", "sleeping")

        assert not end_session(asker, working, idle_only=True), "busy: left alone"
        assert session_state(asker, working) == "active"
        assert session_state(asker, waiting) == "idle in transaction"
        assert end_session(asker, waiting, idle_only=True)
        assert end_session(asker, working, idle_only=False)
        sleeper.join(10)
        idle.invalidate()  # ended by the server: nothing to give back to the pool
        busy.invalidate()
        for session in (waiting, working):
            _until(lambda s=session: session_state(asker, s) is None, "gone")
        fate = transaction_fate(asker, busy_xid)

    assert not sleeper.is_alive()
    assert fate == "aborted"
