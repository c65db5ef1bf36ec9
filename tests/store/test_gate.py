"""The gate on new PostgreSQL connections: after an attempt that took long and failed (a
server that does not answer), the next are refused at once, saying why, while one
attempt at a time is made in the background; once it reaches the server (or is refused
at once, as by a restarting server), callers connect for themselves again. A server that
refuses at once is tried by each caller."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import pytest
from pg import PostgresServer
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError
from support.faults import SilentServer

from jobhooks.errors import DatabaseUnreachable
from jobhooks.store import engine
from jobhooks.store import gate as gate_module
from jobhooks.store.gate import ConnectGate

TIMED_OUT = (
    "the database server did not answer in time (connect_timeout; a hung server or "
    "pooler, or a firewall dropping the connection)"
)


def _until(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """Whether ``condition()`` held within ``seconds`` (asked every 20 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _timed_connect(database: object) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        database.connect().close()  # type: ignore[attr-defined]
    except (OperationalError, DatabaseUnreachable) as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def _reconnects() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "jobhooks-reconnect"}


def test_while_a_server_does_not_answer_callers_are_refused_at_once_and_its_return_is_noticed(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads, writes and heartbeats alike: one caller waits out the connect timeout; while
    the server stays silent every other is told at once, however long it lasts; once it
    answers, the next caller connects without having waited for anyone."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    gate = ConnectGate(pause=0)
    with SilentServer() as silent:
        database = engine.connect(silent.url, gate=gate)
        try:
            first, first_took = _timed_connect(database)
            refusals = [_timed_connect(database) for _ in range(3)]
            kept_closed = not _until(lambda: not gate.closed, 2.5)  # two more attempts fail
            later, later_took = _timed_connect(database)
            real = make_url(pg_server.url)
            silent.answer(real.host or "127.0.0.1", real.port or 5432)
            opened = _until(lambda: not gate.closed)
            back, back_took = _timed_connect(database)
        finally:
            database.dispose()

    assert isinstance(first, OperationalError) and str(first.orig) and first_took >= 1
    for refusal, took in [*refusals, (later, later_took)]:
        assert isinstance(refusal, DatabaseUnreachable), refusal
        assert took < 0.5, f"refused after {took:.1f} s"
        assert str(refusal) == (
            f"{TIMED_OUT}; jobhooks keeps trying in the background and connects again once "
            "it answers"
        )
        assert refusal.cause == TIMED_OUT
    assert kept_closed, "the gate opened while the server was still silent"
    assert opened, "the server's return went unnoticed"
    assert back is None and back_took < 1, back


def test_a_server_that_starts_refusing_opens_the_gate_so_callers_see_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung server that is restarted (nothing listens for a moment): the background
    attempt is refused at once, and callers try again for themselves, each told the
    server's own answer rather than the old timeout."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    gate = ConnectGate(pause=0)
    with SilentServer() as silent:
        database = engine.connect(silent.url, gate=gate)
        try:
            _timed_connect(database)
            assert gate.closed
            silent.refuse()
            opened = _until(lambda: not gate.closed)
            refused, took = _timed_connect(database)
        finally:
            database.dispose()

    assert opened
    assert isinstance(refused, OperationalError) and took < 1
    assert "Connection refused" in str(refused)


def test_disposing_of_the_engine_ends_the_background_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store closed while its server is gone leaves no thread trying to reach it, and an
    engine made again for the same gate connects for itself."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    before = _reconnects()
    gate = ConnectGate(pause=0)
    with SilentServer() as silent:
        database = engine.connect(silent.url, gate=gate)
        _timed_connect(database)
        trying = _reconnects() - before
        database.dispose()
        ended = _until(lambda: not (_reconnects() & trying), 3)

    assert len(trying) == 1, "one background attempt at a time"
    assert not gate.closed
    assert ended, "the background attempts went on after the engine was disposed"


def test_many_callers_failing_slowly_at_once_start_one_background_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight threads that were already connecting when the server stopped answering all
    fail after the timeout; the server is then tried by one thread, not eight."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    before = _reconnects()
    gate = ConnectGate(pause=0)
    with SilentServer() as silent:
        database = engine.connect(silent.url, gate=gate)
        try:
            callers = [threading.Thread(target=_timed_connect, args=(database,)) for _ in range(8)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join(10)
            trying = _reconnects() - before
        finally:
            database.dispose()
    assert len(trying) == 1


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


class _Unanswered(Exception):
    """A driver's failure to connect, in the tests that script one."""


class _Connection:
    def close(self) -> None:
        pass


def test_an_attempt_that_began_before_the_server_came_back_does_not_close_the_gate_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two callers were connecting when the server stopped answering; the first's failure
    closes the gate, the server comes back and the background attempt opens it; then the
    second's attempt, begun long before, fails too. That is old news: callers go on
    connecting rather than being refused again."""
    monkeypatch.setattr(gate_module, "SLOW_ATTEMPT", 0.05)
    back, late = threading.Event(), threading.Event()

    def connect() -> _Connection:
        if back.is_set():
            return _Connection()
        time.sleep(0.06)
        raise _Unanswered("timeout expired")

    def connect_late() -> _Connection:
        late.wait(5)
        time.sleep(0.06)
        raise _Unanswered("timeout expired")

    gate = ConnectGate(pause=0)
    begun_early = threading.Thread(target=lambda: _attempt(gate, connect_late))
    begun_early.start()
    _attempt(gate, connect)
    closed = gate.closed
    back.set()
    opened = _until(lambda: not gate.closed, 3)
    late.set()
    begun_early.join(5)

    assert closed and opened
    assert not gate.closed, "refused again for an attempt begun before the server came back"
    assert isinstance(gate.attempt(connect, _Unanswered), _Connection)


def _attempt(gate: ConnectGate, connect: Callable[[], _Connection]) -> None:
    with contextlib.suppress(_Unanswered):
        gate.attempt(connect, _Unanswered)
