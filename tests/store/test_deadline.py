"""A PostgreSQL server that froze under open connections (a paused machine, a disk hung
under the server, a stuck pooler: its host still acknowledges what is sent, so no TCP
timeout ends anything) holds no write, read or check-in for longer than the deadline."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from support.faults import SilentServer
from support.reports import new_completion

from jobhooks.errors import CommitUnconfirmed, StoreError
from jobhooks.store import Store, deadline, engine, writer
from jobhooks.store.database import open_database
from jobhooks.store.deadline import Watcher, guard
from jobhooks.store.engine import shown_url
from jobhooks.store.writer import BatchOperation, GroupCommitWriter

OVERDUE = (
    "the database server did not answer within 1 s (a hung server, pooler or disk, a paused "
    "machine, or a lock another session holds)"
)

TIMED_OUT = (
    "the database server did not answer in time (connect_timeout; a hung server or pooler, "
    "or a firewall dropping the connection)"
)


@pytest.fixture
def frozen(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """A relay to the test's database, which :meth:`SilentServer.silence` freezes; a
    deadline of 1 s, and short waits for what follows it."""
    monkeypatch.setattr(deadline, "DEADLINE", 1.0)
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    monkeypatch.setattr(writer, "FATE_WAIT", 0.3)
    url = make_url(pg_database)
    with SilentServer() as relay:
        relay.answer(url.host or "127.0.0.1", url.port or 5432)
        relay.url = url.set(host="127.0.0.1", port=relay.port).render_as_string(False)
        yield relay


def _stored(url: str) -> int:
    database = engine.connect(url)
    try:
        with database.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM completions")).scalar_one())
    finally:
        database.dispose()


def test_a_check_in_on_a_server_that_froze_is_answered_not_stored(
    frozen: SilentServer, pg_database: str
) -> None:
    store = Store(frozen.url)
    try:
        asyncio.run(store.check_in(new_completion()))
        frozen.silence()

        started = time.monotonic()
        with pytest.raises(StoreError) as refused:
            asyncio.run(asyncio.wait_for(store.check_in(new_completion()), 20))
        took = time.monotonic() - started
        problem = store.health.problem
    finally:
        store.close()

    assert not isinstance(refused.value, CommitUnconfirmed), refused.value
    assert took < 8, f"answered after {took:.1f} s"
    assert problem in (OVERDUE, TIMED_OUT)  # what /readyz says: the group, then the retry
    assert _stored(pg_database) == 1


def test_a_read_on_a_server_that_froze_fails_within_the_deadline(frozen: SilentServer) -> None:
    """The kept connection the read is given is checked first: the check is what the frozen
    server never answers, and it is watched too."""
    store = Store(frozen.url)
    try:
        assert asyncio.run(store.tokens.find("jh_nothing")) is None  # a connection kept
        frozen.silence()

        started = time.monotonic()
        with pytest.raises(StoreError) as failed:
            asyncio.run(asyncio.wait_for(store.tokens.find("jh_nothing"), 20))
        took = time.monotonic() - started
    finally:
        store.close()

    assert str(failed.value) == f"the database cannot be read: {OVERDUE}"
    assert took < 6, f"answered after {took:.1f} s"


def test_a_group_whose_commit_the_frozen_server_never_answered_may_have_been_stored(
    frozen: SilentServer,
) -> None:
    """The server froze as the COMMIT was sent: nobody can say whether it was applied, so
    the writes are answered "may have been stored", never "not stored" (an orchestrator
    sends a completion again with the same key; one told "not stored" may not)."""
    freezing = BatchOperation(
        "freezing",
        lambda _connection, payloads, _now: [frozen.silence(), *[None] * len(payloads)][1:],
        repeatable=True,
    )
    group = GroupCommitWriter(engine.connect(frozen.url))
    group.start()
    try:
        with pytest.raises(StoreError) as failed:
            asyncio.run(asyncio.wait_for(group.call(freezing, None), 20))
    finally:
        group.stop()

    assert isinstance(failed.value, CommitUnconfirmed), repr(failed.value)
    assert str(failed.value).startswith("the database did not confirm the write (")


def test_a_start_whose_first_read_never_ends_says_so(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node starts while another session holds a lock on what it reads first (a migration
    left hanging, an administrator's open transaction): it stops with an error that says
    what it waited for, instead of hanging at its start."""
    monkeypatch.setattr(deadline, "DEADLINE", 1.0)
    with psycopg.connect(pg_database) as admin:
        admin.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(StoreError) as failed:
            open_database(pg_database)
        took = time.monotonic() - started

    assert str(failed.value) == f"cannot open the database {shown_url(pg_database)}: {OVERDUE}"
    assert took < 5, f"gave up after {took:.1f} s"


@pytest.fixture
def guarded(pg_database: str) -> Iterator[tuple[Engine, Watcher]]:
    """An engine on the test's database whose connections a watcher of the test's own
    watches (it checks only when told)."""
    watcher = Watcher(run=False)
    pool = create_engine(engine.connect(pg_database).url, pool_size=2)
    guard(pool, watcher)
    try:
        yield pool, watcher
    finally:
        pool.dispose()


def test_a_connection_kept_past_the_deadline_is_broken(
    guarded: tuple[Engine, Watcher],
) -> None:
    pool, watcher = guarded
    with watcher.watch() as use, pool.connect() as connection:
        watcher.check(use.bound_at + deadline.DEADLINE - 1)
        assert connection.execute(text("SELECT 1")).scalar_one() == 1  # left alone

        watcher.check(use.bound_at + deadline.DEADLINE + 1)

        assert use.tripped
        with pytest.raises(OperationalError):
            connection.execute(text("SELECT 1"))


def test_the_deadline_counts_from_when_the_connection_is_handed_over(
    guarded: tuple[Engine, Watcher],
) -> None:
    """Waiting for a free connection of a busy pool is not the server's slowness."""
    pool, watcher = guarded
    with watcher.watch() as use:
        before = time.monotonic()
        with pool.connect() as connection:
            assert use.bound_at >= before
            watcher.check(use.bound_at + deadline.DEADLINE - 0.5)
            assert not use.tripped
            assert connection.execute(text("SELECT 1")).scalar_one() == 1


def test_a_connection_given_back_is_never_broken_for_the_use_that_had_it(
    guarded: tuple[Engine, Watcher],
) -> None:
    """Back in the pool, its descriptor may soon be another connection's (or a file's)."""
    pool, watcher = guarded
    with watcher.watch() as use:
        with pool.connect() as connection:
            connection.execute(text("SELECT 1"))
        watcher.check(use.bound_at + deadline.DEADLINE + 1)
        assert not use.tripped
    with pool.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1


def test_a_use_given_a_new_connection_after_a_trip_is_watched_again(
    guarded: tuple[Engine, Watcher],
) -> None:
    """The check of a kept connection hung and was broken; the connection that replaces it
    hangs too (a stuck pooler answers new logins itself): it is broken in its turn."""
    pool, watcher = guarded
    with watcher.watch() as use:
        with pytest.raises(OperationalError), pool.connect() as first:
            watcher.check(use.bound_at + deadline.DEADLINE + 1)
            assert use.tripped
            first.execute(text("SELECT 1"))
        # The broken one fails its check as it is taken again: a new one replaces it.
        with pytest.raises(OperationalError), pool.connect() as second:
            assert not use.tripped  # the trip was the other connection's
            second.execute(text("SELECT 1"))
            watcher.check(use.bound_at + deadline.DEADLINE + 1)
            assert use.tripped
            second.execute(text("SELECT 1"))


def test_a_slow_read_on_a_server_that_works_fails_alone(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that outlasts the deadline (an operator's, or one waiting on a lock) is
    broken, and nothing else: the next check-in is stored."""
    monkeypatch.setattr(deadline, "DEADLINE", 1.0)
    store = Store(pg_database)
    try:
        with pytest.raises(StoreError) as slow:
            store._db.read_now(lambda connection: connection.execute(text("SELECT pg_sleep(3)")))
        receipt = asyncio.run(store.check_in(new_completion()))
        healthy = store.health.ok
    finally:
        store.close()

    assert str(slow.value) == f"the database cannot be read: {OVERDUE}"
    assert not receipt.duplicate and healthy


def test_a_frozen_server_costs_one_deadline_not_one_per_kept_connection(
    frozen: SilentServer,
) -> None:
    """The pool kept several connections; the first whose check the deadline broke has
    every other replaced, and the attempt to connect that follows, unanswered, closes the
    gate: the next reads and check-ins are refused at once, and /readyz says why."""
    store = Store(frozen.url)
    try:

        async def reads(count: int) -> None:
            await asyncio.gather(*(store.tokens.find("jh_nothing") for _ in range(count)))

        asyncio.run(reads(6))  # six connections kept
        frozen.silence()
        took = []
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StoreError):
                asyncio.run(asyncio.wait_for(store.tokens.find("jh_nothing"), 20))
            took.append(time.monotonic() - started)
        started = time.monotonic()
        with pytest.raises(StoreError) as refused:
            asyncio.run(asyncio.wait_for(store.check_in(new_completion()), 20))
        check_in_took = time.monotonic() - started
        health = store.health
    finally:
        store.close()

    assert 1 <= took[0] < 4, took
    assert took[1] < 0.5 and took[2] < 0.5, took
    assert check_in_took < 0.5
    assert str(refused.value).startswith(f"{TIMED_OUT}; jobhooks keeps trying in the background")
    assert not health.ok and health.problem == TIMED_OUT


def test_a_connection_closed_under_its_watch_is_skipped_and_the_watcher_goes_on() -> None:
    """Its descriptor was closed (or is a file's by now): nothing is shut down or leaked,
    and the next use past its deadline is still broken."""
    watcher = Watcher(run=False)
    gone, _peer = socket.socketpair()
    kept, kept_peer = socket.socketpair()

    def connection_over(sock: socket.socket) -> Any:
        driver = SimpleNamespace(fileno=sock.fileno)
        return SimpleNamespace(connection=SimpleNamespace(dbapi_connection=driver), info={})

    open_before = len(os.listdir("/proc/self/fd"))
    with watcher.watch() as first:
        first.bind(connection_over(gone))
        gone.close()
        with watcher.watch() as second:
            second.bind(connection_over(kept))
            watcher.check(time.monotonic() + deadline.DEADLINE + 1)

            assert kept_peer.recv(1) == b""  # shut down
            assert second.tripped
    assert len(os.listdir("/proc/self/fd")) == open_before - 1  # the closed one, no more
    kept.close()
    kept_peer.close()
    _peer.close()


def test_check_ins_behind_a_lock_another_session_holds_are_answered_together(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session holds the completions table (a manual LOCK TABLE, a migration of a
    newer version): the group waiting behind it is broken at the deadline and applied
    once more, and when the lock is still held, every write of the group is answered
    "not stored" then, rather than each after a lock wait of its own in turn."""
    monkeypatch.setattr(deadline, "DEADLINE", 1.0)
    monkeypatch.setattr(writer, "FATE_WAIT", 0.3)
    monkeypatch.setattr(writer, "AGAIN_LOCK_WAIT", 1.0)
    store = Store(pg_database)

    async def timed_check_in() -> tuple[BaseException | None, float]:
        started = time.monotonic()
        try:
            await asyncio.wait_for(store.check_in(new_completion()), 60)
        except StoreError as exc:
            return exc, time.monotonic() - started
        return None, time.monotonic() - started

    async def many(count: int) -> list[tuple[BaseException | None, float]]:
        return await asyncio.gather(*(timed_check_in() for _ in range(count)))

    try:
        asyncio.run(store.check_in(new_completion()))
        with psycopg.connect(pg_database) as holder:
            holder.execute("LOCK TABLE completions IN ACCESS EXCLUSIVE MODE")
            answers = asyncio.run(many(12))
        after = asyncio.run(store.check_in(new_completion()))
    finally:
        store.close()

    slowest = max(took for _answer, took in answers)
    assert slowest < 6, f"the last answered after {slowest:.1f} s"
    for answer, _took in answers:
        assert isinstance(answer, StoreError) and not isinstance(answer, CommitUnconfirmed)
        assert str(answer) == (
            "a lock another session holds on jobhooks' tables did not come free in time"
        )
    assert not after.duplicate
    assert _stored(pg_database) == 2
