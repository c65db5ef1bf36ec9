"""The gate on new PostgreSQL connections: after an attempt that took long and failed (a
server that does not answer), the next are refused at once for a while, saying when the
next attempt is; a server that refuses at once is tried each time."""

from __future__ import annotations

import re
import socket
import time

import pytest
from sqlalchemy.exc import OperationalError
from support.clock import ManualClock
from support.faults import SilentServer

from jobhooks.errors import DatabaseUnreachable
from jobhooks.store import engine
from jobhooks.store.gate import MAX_WAIT, WAIT_FACTOR, ConnectGate


def test_after_an_attempt_that_timed_out_the_next_are_refused_at_once_saying_when(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reads, writes and heartbeats alike: while a server does not answer, only one
    caller in three waits out the connect timeout; the others are told at once."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    clock = ManualClock()
    with SilentServer() as silent:
        database = engine.connect(silent.url, gate=ConnectGate(clock))
        attempts = []
        for advance in (0, 0, 2 * MAX_WAIT):
            clock.advance(advance)
            started = time.monotonic()
            with pytest.raises((OperationalError, DatabaseUnreachable)) as failed:
                database.connect()
            attempts.append((failed.value, time.monotonic() - started))
        database.dispose()

    (first, first_took), (second, second_took), (third, third_took) = attempts
    timed_out = (
        "the database server did not answer in time (connect_timeout; a hung server or "
        "pooler, or a firewall dropping the connection)"
    )
    assert isinstance(first, OperationalError) and first_took >= 1
    assert isinstance(second, DatabaseUnreachable) and second_took < 0.5
    wait = re.fullmatch(
        re.escape(timed_out) + r"; the next attempt to reach it is in (\d+) s", str(second)
    )
    assert wait is not None, str(second)
    assert WAIT_FACTOR * first_took - 1 <= int(wait[1]) <= WAIT_FACTOR * first_took + 1
    assert isinstance(third, OperationalError) and third_took >= 1, "not tried again"


def test_a_server_that_refuses_at_once_is_tried_again_at_once() -> None:
    """Nothing listens (the server is down or restarting): each attempt fails in a moment,
    so none is refused without one, and the first after the server is back connects."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # the port is free: connections to it are refused
    database = engine.connect(f"postgresql://postgres@127.0.0.1:{port}/test")
    for _ in range(5):
        with pytest.raises(OperationalError) as refused:
            database.connect()
        assert "Connection refused" in str(refused.value)
    database.dispose()
