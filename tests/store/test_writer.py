"""The group-commit writer's connection: kept while writes come, checked again after a
quiet while, so a database server that closed it does not fail a write; and a group whose
COMMIT had no answer is not stored twice."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError
from support.clock import ManualClock
from support.faults import AnswerToCommitLost, SilentServer
from support.reports import new_completion

from jobhooks.errors import CommitUnconfirmed, DatabaseLost, StoreError
from jobhooks.store import Store, access, engine, writer
from jobhooks.store.engine import connect
from jobhooks.store.gate import ConnectGate
from jobhooks.store.nodes import NodeIdentity, beat
from jobhooks.store.records import CheckinReceipt, ClaimedRun, RunOutcome, RunStatus
from jobhooks.store.writer import KEEP_CONNECTION, BatchOperation, GroupCommitWriter


def _count_sessions(url: str, query: str) -> int:
    """One count over the sessions of ``url``'s database, from a connection of its own."""
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def _close_every_connection_but_this(url: str) -> int:
    """What a PostgreSQL restart or an idle timeout does to the store's connections."""
    return _count_sessions(
        url,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )


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


def _stored(url: str) -> tuple[int, int]:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            completions = connection.exec_driver_sql("SELECT count(*) FROM completions")
            runs = connection.exec_driver_sql("SELECT count(*) FROM handler_runs")
            return int(completions.scalar_one()), int(runs.scalar_one())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "postgresql, unreachable"])
def lost_at(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, bool]:
    """Where a COMMIT's answer is lost, as (database URL, whether the server can then be
    asked what became of the transaction): SQLite; PostgreSQL; PostgreSQL unreachable
    for a while after (the writer cannot know, and applies the group again)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}", False
    url: str = request.getfixturevalue("pg_database")
    return url, request.param == "postgresql"


def test_reports_whose_commit_answer_was_lost_are_stored_and_run_once(
    lost_at: tuple[str, bool],
) -> None:
    store_url, says = lost_at
    store = Store(store_url)
    reports = [new_completion("log") for _ in range(3)]

    async def check_in_together() -> list[CheckinReceipt]:
        return await asyncio.gather(*(store.check_in(report) for report in reports))

    try:
        with AnswerToCommitLost(store, store_url, server_says=says) as lost:
            receipts = asyncio.run(check_in_together())
        assert lost.left == 0, "a COMMIT's answer was lost"
        health = store.health
    finally:
        store.close()

    assert [r.duplicate for r in receipts] == [False] * 3
    assert len({r.id for r in receipts}) == 3
    assert [len(r.runs) for r in receipts] == [1, 1, 1]
    assert _stored(store_url) == (3, 3), "each report stored once, with one run"
    assert health.ok, health.problem
    assert lost.asked == 0, "check-ins read back what is stored: no round trip to ask"


def test_a_report_whose_commit_and_its_retry_go_unanswered_is_said_maybe_stored(
    store_url: str,
) -> None:
    # Not "not stored": it was, and an agent resending it without its key would store it
    # twice.
    store = Store(store_url)
    try:
        with (
            AnswerToCommitLost(store, store_url, count=2, server_says=False) as lost,
            pytest.raises(CommitUnconfirmed) as unconfirmed,
        ):
            asyncio.run(store.check_in(new_completion("log")))
        assert lost.left == 0, "both COMMITs' answers were lost"
    finally:
        store.close()

    assert "may have been stored" in str(unconfirmed.value)
    assert _stored(store_url) == (1, 1)


def test_a_token_whose_commit_answer_was_lost_is_made_once(lost_at: tuple[str, bool]) -> None:
    store_url, says = lost_at
    store = Store(store_url)
    try:
        with AnswerToCommitLost(store, store_url, server_says=says) as lost:
            token, info = asyncio.run(store.tokens.create("admin", label="ops"))
        assert lost.left == 0, "a COMMIT's answer was lost"
        found = asyncio.run(store.tokens.find(token))
        every = asyncio.run(store.tokens.all())
    finally:
        store.close()

    assert found == info, "the token handed out works"
    assert [t.id for t in every] == [info.id], "and it is the only one made"


class _Slots:
    """This process's worker, with room for every run (``LocalWorker``)."""

    id = "local"

    def __init__(self) -> None:
        self.delivered: list[ClaimedRun] = []
        self.woken: list[float] = []

    def reserve(self, count: int) -> tuple[str, int]:
        return self.id, max(count, 0)

    def deliver(self, runs: Sequence[ClaimedRun]) -> None:
        self.delivered.extend(runs)

    def wake_at(self, when: float) -> None:
        self.woken.append(when)


def _live(url: str, node_id: str) -> None:
    """Register ``node_id`` as a live process (its heartbeat row): nobody else takes its
    leases back."""
    engine = connect(url)
    try:
        with engine.begin() as connection:
            now = time.time()
            beat(connection, NodeIdentity(node_id, "here", None, 1, None), now, now)
    finally:
        engine.dispose()


def test_runs_handed_over_in_a_group_whose_commit_is_unconfirmed_wait_again_for_a_claim(
    store_url: str,
) -> None:
    clock = ManualClock()
    store = Store(store_url, clock=clock)
    worker = _Slots()
    store.set_local_worker(worker)
    try:
        _live(store_url, worker.id)
        with AnswerToCommitLost(store, store_url, server_says=False):
            receipt = asyncio.run(store.check_in(new_completion("log", lease=30.0)))
        assert worker.delivered == [], "not handed over: the commit was not confirmed"
        assert worker.woken == [clock()], "the worker is told to look for them now"
        claimed = asyncio.run(store.claim(worker.id, 10, {"log": 30.0}))
    finally:
        store.close()

    assert [run.id for run in claimed] == [run.id for run in receipt.runs]
    assert [(run.attempt, run.number) for run in claimed] == [(1, 1)], "no attempt used"


async def _dead_run(store: Store) -> str:
    """A run whose only attempt failed: dead, as an operator would replay it."""
    await store.check_in(new_completion("mail", max_attempts=1))
    [run] = await store.claim("w1", 10, {"mail": 5.0})
    await store.finish(
        [RunOutcome(run.id, "w1", run.number, RunStatus.DEAD, 0.0, 1.0, 2.0, error="boom")]
    )
    return run.id


def test_a_replay_whose_commit_answer_was_lost_answers_as_the_replay(
    lost_at: tuple[str, bool],
) -> None:
    # Applied again, the replay would find its run pending and answer so (the API's 409,
    # "only a finished or failed run can be replayed"), though it was replayed.
    store_url, says = lost_at
    store = Store(store_url)
    try:
        run_id = asyncio.run(_dead_run(store))
        with AnswerToCommitLost(store, store_url, server_says=says) as lost:
            before = asyncio.run(store.replay(run_id))
        assert lost.left == 0, "the COMMIT's answer was lost"
        [again] = asyncio.run(store.claim("w2", 10, {"mail": 5.0}))
    finally:
        store.close()

    assert (again.id, again.number) == (run_id, 2), "replayed once"
    if says:
        assert before == "dead", "answered as the replay that happened"
    else:
        assert before == "pending", "unknowable without asking the server: what is stored"


@pytest.mark.parametrize(
    ("applied", "server_says", "maybe", "then"),
    [
        # Neither COMMIT reached the server, which says so: the operator is told plainly
        # that the replay did not happen (not "may have been stored").
        (False, True, False, "dead"),
        # The group's COMMIT never reached the server (asked: rolled back); the replay
        # applied again reached it, but that answer was lost too, and the server could
        # not be asked then. It happened: "not done" would be wrong.
        ([False, True], [True, False], True, "pending"),
    ],
    ids=["both-rolled-back", "retry-unconfirmed"],
)
def test_a_replay_whose_retry_fails_too_says_whether_it_may_have_happened(
    pg_database: str,
    applied: bool | list[bool],
    server_says: bool | list[bool],
    maybe: bool,
    then: str,
) -> None:
    store = Store(pg_database)
    try:
        run_id = asyncio.run(_dead_run(store))
        with (
            AnswerToCommitLost(
                store, pg_database, count=2, applied=applied, server_says=server_says
            ) as lost,
            pytest.raises(StoreError) as refused,
        ):
            asyncio.run(store.replay(run_id))
        assert lost.left == 0 and lost.asked >= 2, "asked about both"
        replayed = asyncio.run(store.replay(run_id))
    finally:
        store.close()

    assert isinstance(refused.value, CommitUnconfirmed) == maybe, refused.value
    assert replayed == then, "what the replay that failed left: done or not"


def test_heartbeats_whose_commit_never_reached_a_server_still_waiting_go_on(
    pg_database: str,
) -> None:
    # Periodic work (the heartbeat) runs in transactions of its own: the same cut must
    # not leave its row locked by the abandoned session, or every later beat waits.
    store = Store(pg_database)

    def count(connection: Any) -> int:
        return int(
            connection.exec_driver_sql(
                "INSERT INTO signing_keys (name, secret, created_at) VALUES ('beat', 'x', 0)"
                " ON CONFLICT (name) DO UPDATE SET created_at = signing_keys.created_at + 1"
                " RETURNING created_at"
            ).scalar_one()
        )

    def beat() -> int:
        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(store.writer.transaction(count)))
        worker.start()
        worker.join(10)
        assert done, "the next beat is still waiting after 10 s"
        return done[0]

    try:
        beat()
        with AnswerToCommitLost(store, pg_database, half_open=True, fate_wait=30.0):
            with pytest.raises(OperationalError):
                store.writer.transaction(count)
            waiting = _waiting_sessions(pg_database)
        after = beat()
    finally:
        store.close()

    assert waiting == 0, "the abandoned session is gone"
    assert after == 1, "the lost beat was not stored; the next one was"


def test_a_question_cut_on_its_way_is_asked_again(pg_database: str) -> None:
    store = Store(pg_database)
    try:
        run_id = asyncio.run(_dead_run(store))
        with AnswerToCommitLost(
            store,
            pg_database,
            server_says=[False, True],
            question_error="consuming input failed: server closed the connection unexpectedly",
        ) as lost:
            before = asyncio.run(store.replay(run_id))
        assert lost.asked == 2
    finally:
        store.close()

    assert before == "dead", "answered as the replay that happened"


def test_committed_is_not_trusted_about_a_session_that_is_gone(pg_database: str) -> None:
    # A server that crashed (one of its processes is enough) hands out again the ids whose
    # records never reached its disk: about a session that is gone, "committed" may be
    # another transaction's answer. Not knowing, the writer applies the replay again
    # (which finds it pending).
    store = Store(pg_database)
    try:
        run_id = asyncio.run(_dead_run(store))
        with AnswerToCommitLost(store, pg_database, session_ended=True) as lost:
            before = asyncio.run(store.replay(run_id))
        assert lost.asked == 1
    finally:
        store.close()

    assert before == "pending"


def test_writes_the_server_refuses_keep_their_connection(pg_database: str) -> None:
    # The server answered (it rolled back): nothing to settle, and no new connection per
    # failed write while, say, its disk is full.
    store = Store(pg_database)
    sessions: set[int] = set()

    def refused(connection: Any, payloads: Sequence[None], _now: float) -> list[None]:
        sessions.add(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        connection.exec_driver_sql("SELECT 1/0")
        return [None] * len(payloads)

    async def write_all() -> list[BaseException | None]:
        failing = BatchOperation("refused", refused)
        return await asyncio.gather(
            *(store.writer.call(failing, None) for _ in range(20)), return_exceptions=True
        )

    try:
        answers = asyncio.run(write_all())
    finally:
        store.close()

    assert all(isinstance(answer, StoreError) for answer in answers)
    assert len(sessions) == 1, f"{len(sessions)} server sessions for 20 refused writes"


def _waiting_sessions(url: str) -> int:
    """Sessions of ``url``'s database waiting inside a transaction for their client."""
    return _count_sessions(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'idle in transaction'",
    )


def test_a_commit_that_never_reached_a_server_still_waiting_for_it_is_ended(
    pg_database: str,
) -> None:
    # The connection is cut on the client's side only: the server keeps the transaction
    # open, holding the run's row, and waits for a COMMIT that will never come. Asked, it
    # would say "in progress" for as long as it waits (hours, until TCP keepalive), and
    # the replay applied again would wait for that row. The writer ends its own
    # abandoned session, and the replay is applied once.
    store = Store(pg_database)
    try:
        run_id = asyncio.run(_dead_run(store))
        started = time.monotonic()
        with AnswerToCommitLost(store, pg_database, half_open=True, fate_wait=30.0):
            before = asyncio.run(store.replay(run_id))
            took = time.monotonic() - started
            waiting = _waiting_sessions(pg_database)
        [again] = asyncio.run(store.claim("w2", 10, {"mail": 5.0}))
    finally:
        store.close()

    assert before == "dead"
    assert took < 10, f"answered in {took:.1f} s, without waiting out the 30 s"
    assert waiting == 0, "the abandoned session is gone"
    assert (again.id, again.number) == (run_id, 2), "replayed once"


def test_check_ins_whose_commit_never_reached_a_server_still_waiting_are_stored_at_once(
    pg_database: str,
) -> None:
    # The same cut under a group of check-ins: they read back rather than ask, but the
    # abandoned session still holds their rows (and the summaries' counters every later
    # check-in updates). Ended, it holds nothing: each report is stored once, now.
    store = Store(pg_database)
    reports = [new_completion("log") for _ in range(3)]

    async def check_in_together() -> list[CheckinReceipt]:
        return await asyncio.gather(*(store.check_in(report) for report in reports))

    try:
        started = time.monotonic()
        with AnswerToCommitLost(store, pg_database, half_open=True, fate_wait=30.0) as lost:
            receipts = asyncio.run(check_in_together())
            took = time.monotonic() - started
            waiting = _waiting_sessions(pg_database)
            later = asyncio.run(store.check_in(new_completion("log")))
        assert lost.asked == 0, "check-ins read back: nothing to ask"
    finally:
        store.close()

    assert [r.id for r in receipts] == [r.id for r in reports]
    assert not later.duplicate
    assert took < 4, f"answered in {took:.1f} s, not a lock wait per report"
    assert waiting == 0, "the abandoned session is gone"
    assert _stored(pg_database) == (4, 4)


class _Full(_Slots):
    """This process's worker with no room: a check-in leaves its runs waiting."""

    def reserve(self, count: int) -> tuple[str, int]:
        return self.id, 0


def test_a_claim_and_a_check_in_whose_commit_answer_was_lost_give_out_the_run_once(
    lost_at: tuple[str, bool],
) -> None:
    store_url, says = lost_at
    # The worker's claim and a check-in (whose run waits: the worker has no room) share a
    # group whose COMMIT answer is lost. Retried one by one, the claim may take the run;
    # the check-in's retry must not then give that run back while the worker runs it.
    clock = ManualClock()
    store = Store(store_url, clock=clock)
    worker = _Full()
    store.set_local_worker(worker)
    entered, gate = threading.Event(), threading.Event()

    def hold(_connection: object, payloads: Sequence[None], _now: float) -> list[None]:
        entered.set()
        gate.wait(10)
        return [None] * len(payloads)

    async def one_group() -> tuple[list[ClaimedRun], CheckinReceipt]:
        held = store.writer.submit(BatchOperation("hold", hold), None)
        assert entered.wait(10), "the writer is in the hold's transaction: what follows waits"
        claim = asyncio.ensure_future(store.claim(worker.id, 10, {"log": 30.0}))
        check_in = asyncio.ensure_future(store.check_in(new_completion("log", lease=30.0)))
        await asyncio.sleep(0)  # both queued, in this order: one group
        gate.set()
        await held
        return await claim, await check_in

    try:
        _live(store_url, worker.id)
        with AnswerToCommitLost(store, store_url, skip=1, server_says=says) as lost:
            claimed, receipt = asyncio.run(one_group())
        assert lost.left == 0, "the group's COMMIT answer was lost"
        again = asyncio.run(store.claim("other", 10, {"log": 30.0}))
    finally:
        store.close()

    # Known committed, the group stands as applied (the claim came first and found
    # nothing; the run waits for the next claim); applied again, the claim takes the run.
    given = [*claimed, *again]
    assert [run.id for run in given] == [run.id for run in receipt.runs], "given out once"
    assert [run.id for run in claimed] == ([] if says else [run.id for run in receipt.runs])


def _slow_commit(seconds: float) -> str:
    """A deferred trigger that makes the first COMMIT of a report with message 'slow'
    take ``seconds`` (a sequence counts, whatever becomes of the transactions)."""
    return f"""
CREATE SEQUENCE slow_commits;
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF nextval('slow_commits') = 1 THEN PERFORM pg_sleep({seconds}); END IF;
RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON completions
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.message = 'slow')
EXECUTE FUNCTION slow_commit();
"""


def _check_in_losing_a_slow_commit(url: str, seconds: float) -> tuple[CheckinReceipt, float]:
    """Check in one report whose COMMIT reaches the server, takes ``seconds`` there, and
    whose connection breaks before the answer; returns the receipt and how long it took."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(_slow_commit(seconds))
    store = Store(url)
    dialect = store._engine.dialect
    commit = dialect.do_commit
    lost = [False]

    def commit_then_lose_the_connection(dbapi_connection: Any) -> None:
        if lost[0]:
            commit(dbapi_connection)
            return
        lost[0] = True
        server = dbapi_connection.pgconn
        server.send_query(b"COMMIT")  # the server commits, slowly...
        server.flush()
        server.finish()  # ... and the connection breaks before its answer
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    report = new_completion("log", message="slow")
    dialect.do_commit = commit_then_lose_the_connection  # type: ignore[method-assign]
    started = time.monotonic()
    try:
        receipt = asyncio.run(store.check_in(report))
    finally:
        dialect.do_commit = commit  # type: ignore[method-assign]
        store.close()
    assert lost[0]
    assert receipt.id == report.id and not receipt.duplicate
    return receipt, time.monotonic() - started


def test_a_report_whose_commit_was_still_under_way_when_stored_again_is_answered(
    pg_database: str,
) -> None:
    # COMMIT reaches PostgreSQL, which takes its time (a slow disk, a synchronous standby:
    # here a deferred trigger), and the connection breaks before the answer. The writer
    # waits for its old session to finish that COMMIT (up to FATE_WAIT), then reads the
    # report back: stored once, and answered.
    _check_in_losing_a_slow_commit(pg_database, 1.5)
    assert _stored(pg_database) == (1, 1)


def test_a_commit_still_under_way_after_the_fate_wait_is_ended_and_stored_again(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past FATE_WAIT the writer ends its old session (rolling that COMMIT back) rather than
    # let the report's second write wait on its rows until the first is done.
    monkeypatch.setattr(writer, "FATE_WAIT", 0.3)
    _receipt, took = _check_in_losing_a_slow_commit(pg_database, 8.0)
    assert took < 4, f"answered in {took:.1f} s: it waited for the slow COMMIT"
    assert _stored(pg_database) == (1, 1)


def test_writes_to_a_server_that_never_answers_are_refused_together_not_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung server or pooler: the group waits out one connect timeout and every write in
    it is answered "not stored", instead of each write waiting for the server in turn."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    nothing = BatchOperation("nothing", lambda _c, payloads, _now: [None] * len(payloads))

    async def twenty_writes(group: GroupCommitWriter) -> list[Any]:
        futures = [group.submit(nothing, None) for _ in range(20)]
        group.start()  # all twenty in its first group
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 6)

    with SilentServer() as silent:
        group = GroupCommitWriter(connect(silent.url))
        try:
            answers = asyncio.run(twenty_writes(group))
        finally:
            group.stop()

    assert {str(answer) for answer in answers} == {
        "the database server did not answer in time (connect_timeout; a hung server or "
        "pooler, or a firewall dropping the connection)"
    }
    assert all(type(answer) is StoreError for answer in answers)
    assert not group.health.ok


def _through(silent: SilentServer, url: str) -> str:
    """``url`` with its host and port those of ``silent``."""
    return make_url(url).set(host="127.0.0.1", port=silent.port).render_as_string(False)


def test_after_a_connect_timeout_writes_are_refused_at_once_until_the_server_answers(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check-in that reaches a node while its database does not answer is told "not
    stored" at once, rather than after another connect timeout; once the server answers
    again, the next write is stored without waiting for anything."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    gate = ConnectGate(pause=0)
    nothing = BatchOperation("nothing", lambda _c, payloads, _now: [None] * len(payloads))

    async def one_write(group: GroupCommitWriter) -> tuple[object, float]:
        started = time.monotonic()
        try:
            answer: object = await asyncio.wait_for(group.call(nothing, None), 6)
        except StoreError as exc:
            answer = exc
        return answer, time.monotonic() - started

    with SilentServer() as silent:
        through = connect(_through(silent, pg_database), gate=gate)
        group = GroupCommitWriter(through)
        group.start()
        try:
            first, first_took = asyncio.run(one_write(group))
            problem = group.health.problem
            second, second_took = asyncio.run(one_write(group))
            problem_after = group.health.problem
            silent.answer("127.0.0.1", make_url(pg_database).port or 5432)
            deadline = time.monotonic() + 10
            while gate.closed and time.monotonic() < deadline:
                time.sleep(0.02)
            third, third_took = asyncio.run(one_write(group))
        finally:
            group.stop()
            through.dispose()

    timed_out = (
        "the database server did not answer in time (connect_timeout; a hung server or "
        "pooler, or a firewall dropping the connection)"
    )
    assert str(first) == timed_out and first_took >= 0.9
    assert str(second).startswith(f"{timed_out}; jobhooks keeps trying in the background")
    assert second_took < 0.5, f"refused after {second_took:.1f} s"
    assert problem == problem_after == timed_out  # refusals are not failures of their own
    assert third is None, f"not stored once the server answered: {third}"
    assert third_took < 1
    assert group.health.ok


def test_a_file_found_damaged_as_the_writer_connects_refuses_every_write(
    tmp_path: Path,
) -> None:
    """The SQLite file was overwritten while the writer had no connection open (a fresh
    one is made, as after an earlier failure): the write that finds it says the file was
    changed under jobhooks and what to do, not only that it is corrupt."""
    clock = ManualClock()
    path = tmp_path / "jobhooks.db"
    store = Store(f"sqlite:///{path}", clock=clock)
    try:
        asyncio.run(store.check_in(new_completion()))
        clock.advance(KEEP_CONNECTION + 1)  # the writer gives its connection back at the next
        store._engine.dispose()
        with path.open("r+b") as file:
            file.write(b"\xff" * 4096)

        with pytest.raises(DatabaseLost) as refused:
            asyncio.run(store.check_in(new_completion()))

        assert "changed under jobhooks" in str(refused.value)
        assert "restore the file from a backup or move it aside" in str(refused.value)
    finally:
        store.close()


def _failing(error: Exception, seen: list[int]) -> BatchOperation[int, None]:
    """Fails every group; applied alone, fails payload 0 with ``error``."""

    def apply(_connection: Any, payloads: Sequence[int], _now: float) -> list[None]:
        raise OperationalError("INSERT ...", {}, error)

    def again(_connection: Any, payloads: Sequence[int], _now: float) -> list[None]:
        seen.extend(payloads)
        if payloads[0] == 0:
            raise OperationalError("INSERT ...", {}, error)
        return [None] * len(payloads)

    return BatchOperation("failing", apply, again=again)


@pytest.mark.parametrize(
    ("error", "rest_stored"),
    [
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), False),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
    ],
)
def test_a_group_applied_again_stops_at_a_failure_of_the_whole_database(
    tmp_path: Path, error: Exception, rest_stored: bool
) -> None:
    """A group failed and its writes are applied one by one: when the first fails because
    a lock is not granted in time, the others would each wait for it in turn, so they are
    answered with it at once; a deadlock is that write's alone, and the others go on."""
    seen: list[int] = []
    operation = _failing(error, seen)
    group = GroupCommitWriter(connect(f"sqlite:///{tmp_path / 'db.sqlite'}"))

    async def five() -> list[object]:
        calls = [group.submit(operation, n) for n in range(5)]
        group.start()  # all five queued: one group
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        answers = asyncio.run(five())
    finally:
        group.stop()

    assert isinstance(answers[0], StoreError)
    if rest_stored:
        assert answers[1:] == [None] * 4 and seen == [0, 1, 2, 3, 4]
    else:
        assert all(isinstance(answer, StoreError) for answer in answers)
        assert {str(answer) for answer in answers} == {
            "a lock another session holds on jobhooks' tables did not come free in time"
        }
        assert seen == [0], "each write waited for the lock in turn"


def test_writes_behind_a_stuck_one_are_refused_unstored_and_its_own_answered_maybe(
    tmp_path: Path,
) -> None:
    """A transaction that does not end (SQLite on a hung disk): past STUCK_AFTER what waits
    behind it is refused and never stored, new writes are refused at once; past
    GIVE_UP_AFTER its own writes are answered "may be stored"; once it ends, writes are
    taken again."""
    path = tmp_path / "jobhooks.db"
    store = Store(f"sqlite:///{path}")
    entered, release = threading.Event(), threading.Event()

    def hang(_connection: object, payloads: Sequence[None], _now: float) -> list[None]:
        entered.set()
        release.wait(30)
        return [None] * len(payloads)

    async def scenario() -> tuple[str, str]:
        held = store.writer.submit(BatchOperation("hang", hang), None)
        assert await asyncio.to_thread(entered.wait, 10)
        behind = new_completion("log")
        queued = asyncio.ensure_future(store.check_in(behind))
        await asyncio.sleep(0)  # queued behind the transaction that does not end
        began = time.monotonic()
        store.writer.check_stuck(began + writer.STUCK_AFTER + 1)
        with pytest.raises(StoreError, match="has not ended for") as refused:
            await queued
        assert not isinstance(refused.value, CommitUnconfirmed), "never taken: not stored"
        late = new_completion("log")
        with pytest.raises(StoreError, match="has not ended for"):
            await store.check_in(late)
        assert not held.done(), "its own write waits until GIVE_UP_AFTER"
        store.writer.check_stuck(began + writer.GIVE_UP_AFTER + 1)
        with pytest.raises(CommitUnconfirmed, match="may be stored when it does"):
            await held
        release.set()
        for _ in range(1000):  # the writer thread ends the transaction
            if store.writer.stuck is None:
                break
            await asyncio.sleep(0.01)
        taken = await store.check_in(new_completion("log"))
        return f"{behind.id} {late.id}", taken.id

    try:
        refused_ids, taken = asyncio.run(scenario())
    finally:
        store.close()
    with sqlite3.connect(path) as database:
        stored = {row[0] for row in database.execute("SELECT id FROM completions")}
    assert stored == {taken}, f"refused ({refused_ids}) must not be stored"


def test_reads_are_given_up_past_their_wait_and_refused_while_a_write_is_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read on a hung disk never returns either (a token looked up for a check-in):
    its caller is answered after READ_WAIT, and no read starts while a write is stuck."""
    monkeypatch.setattr(access, "READ_WAIT", 0.2)
    store = Store(f"sqlite:///{tmp_path / 'jobhooks.db'}")
    release = threading.Event()

    def hangs(_connection: object) -> int:
        release.wait(10)
        return 1

    def answers(_connection: object) -> int:
        return 2

    async def scenario() -> None:
        with pytest.raises(StoreError, match=r"did not answer within 0\.2 s"):
            await store._db.read(hangs)
        release.set()
        assert await store._db.read(answers) == 2
        entered, held = threading.Event(), threading.Event()

        def hang(_connection: object, payloads: Sequence[None], _now: float) -> list[None]:
            entered.set()
            held.wait(10)
            return [None] * len(payloads)

        stuck = store.writer.submit(BatchOperation("hang", hang), None)
        assert await asyncio.to_thread(entered.wait, 10)
        store.writer.check_stuck(time.monotonic() + writer.STUCK_AFTER + 1)
        try:
            with pytest.raises(StoreError, match="cannot be read: a write to the database has"):
                await store._db.read(answers)
        finally:
            held.set()
        await stuck

    try:
        asyncio.run(scenario())
    finally:
        store.close()
