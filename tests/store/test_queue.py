"""Handler runs in the store: claims under a lease, lost attempts, outcomes, replays.

Time is passed in explicitly, so leases expire without waiting.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store import queue
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.engine import connect
from jobhooks.store.migrate import upgrade as queue_upgrade
from jobhooks.store.queue import (
    ClaimRequest,
    claim_runs,
    finish_runs,
    replay_dead,
    replay_run,
)
from jobhooks.store.records import ClaimedRun, RunOutcome, RunStatus

NOW = 1_800_000_000.0
LEASE = 5.0


def _store_runs(db: StoreDb, *handlers: str, max_attempts: int = 3) -> list[str]:
    [receipt] = db.apply(
        insert_checkins, [new_completion(*handlers, max_attempts=max_attempts)], NOW
    )
    return [run.id for run in receipt.runs]


def _shown(db: StoreDb, run_id: str) -> str:
    """The run's status as operators see it (``running`` is a held open run)."""
    row = db.run(run_id)
    return RunStatus.shown(row.status, row.worker)


def _claim(db: StoreDb, worker: str, now: float, limit: int = 10) -> list[ClaimedRun]:
    request = ClaimRequest(worker, limit, {"mail": LEASE}, 60.0)
    [claimed] = db.apply(claim_runs, [request], now)
    return claimed


def _finish(
    db: StoreDb, run: ClaimedRun, status: str, now: float, due_at: float | None = None, **kw: Any
) -> None:
    outcome = RunOutcome(
        run_id=run.id,
        worker=run.worker,
        number=run.number,
        status=status,
        due_at=now if due_at is None else due_at,
        started_at=now - 0.5,
        finished_at=now,
        **kw,
    )
    db.apply(finish_runs, [outcome], now)


def test_a_claim_leases_due_runs_to_the_worker(db: StoreDb) -> None:
    first = _store_runs(db, "mail", "other")
    second = _store_runs(db, "mail")

    claimed = _claim(db, "w1", NOW + 1)

    assert sorted(run.id for run in claimed) == sorted(first + second)
    mail = next(run for run in claimed if run.id == first[0])
    assert (mail.attempt, mail.number, mail.worker) == (1, 1, "w1")
    assert mail.fields["completion_id"] == mail.completion_id
    assert mail.fields["job_type"] == "Inventory"
    row = db.run(mail.id)
    assert _shown(db, mail.id) == "running"
    assert row.worker == "w1"
    assert row.attempts == row.total_attempts == 1
    assert row.started_at == NOW + 1
    assert row.lease_until == row.due_at == NOW + 1 + LEASE
    other = db.run(first[1])
    assert other.lease_until == NOW + 1 + 60.0, "a handler without a lease gets the default"
    assert _claim(db, "w2", NOW + 2) == [], "leased runs are not claimed again"


def test_two_processes_claiming_at_once_never_take_the_same_run(
    db: StoreDb, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes on one database (two engines here): each claim reads the due runs,
    then marks them taken. Held at that point until the other has read too (or for a
    second, if the other has to wait for the first), they must still split the runs."""
    [run_id] = _store_runs(db, "mail")
    read = {"a": threading.Event(), "b": threading.Event()}
    real = queue._candidates

    def candidates_then_pause(connection: Any, request: ClaimRequest, now: float) -> Any:
        found = real(connection, request, now)
        read[request.worker].set()
        read["b" if request.worker == "a" else "a"].wait(timeout=1.0)
        return found

    monkeypatch.setattr(queue, "_candidates", candidates_then_pause)
    other = StoreDb(connect(store_url))
    try:
        with ThreadPoolExecutor(2) as pool:
            claims = list(pool.map(lambda pair: _claim(*pair, NOW), [(db, "a"), (other, "b")]))
    finally:
        other.engine.dispose()
    assert sorted(len(claimed) for claimed in claims) == [0, 1], claims
    assert [run.id for claimed in claims for run in claimed] == [run_id]


def test_a_claim_takes_at_most_its_limit_oldest_first(db: StoreDb) -> None:
    ids = [_store_runs(db, "mail")[0] for _ in range(3)]

    assert [run.id for run in _claim(db, "w1", NOW, limit=2)] == ids[:2]
    assert [run.id for run in _claim(db, "w2", NOW, limit=2)] == ids[2:]


def test_a_claim_takes_the_earliest_due_whatever_their_status(db: StoreDb) -> None:
    [first] = _store_runs(db, "mail")
    [retried] = _store_runs(db, "mail")
    [run] = _claim(db, "w1", NOW, limit=1)
    assert run.id == first
    _finish(db, run, "failed", NOW + 1, due_at=NOW + 5, error="SMTP 451")
    [later] = db.apply(insert_checkins, [new_completion("mail")], NOW + 10)[0].runs

    taken = [run.id for run in _claim(db, "w2", NOW + 20, limit=2)]

    assert taken == [retried, first], "pending due at NOW, then the retry due at NOW + 5"
    assert [run.id for run in _claim(db, "w3", NOW + 20)] == [later.id]


def test_a_failed_run_is_claimed_again_when_its_retry_is_due(db: StoreDb) -> None:
    [run_id] = _store_runs(db, "mail")
    [run] = _claim(db, "w1", NOW)
    _finish(db, run, "failed", NOW + 1, due_at=NOW + 10, error="SMTP 451")

    failed = db.run(run_id)
    assert (failed.status, failed.worker, failed.due_at) == ("failed", None, NOW + 10)
    assert failed.last_error == "SMTP 451"
    assert _claim(db, "w1", NOW + 9) == []
    [retry] = _claim(db, "w1", NOW + 10)
    assert (retry.attempt, retry.number) == (2, 2)
    assert [a.outcome for a in db.attempts(run_id)] == ["failed"]


def test_a_run_whose_lease_expired_is_claimed_again_and_records_a_lost_attempt(
    db: StoreDb,
) -> None:
    [run_id] = _store_runs(db, "mail")
    _claim(db, "w1", NOW)

    assert _claim(db, "w2", NOW + LEASE - 0.1) == []
    [again] = _claim(db, "w2", NOW + LEASE + 1)

    assert (again.attempt, again.number, again.worker) == (2, 2, "w2")
    [lost] = db.attempts(run_id)
    assert lost.number == 1
    assert lost.outcome == "lost"
    assert lost.worker == "w1"
    assert "lease expired" in lost.error
    assert db.run(run_id).worker == "w2"


def test_a_run_handed_to_a_worker_that_died_is_claimed_after_its_lease(db: StoreDb) -> None:
    [receipt] = db.apply(
        lambda c, items, now: insert_checkins(c, items, now, reserve=lambda n: ("w1", n)),
        [new_completion("mail", lease=LEASE)],
        NOW,
    )
    [handed] = receipt.handed_off

    assert _shown(db, handed.id) == "running"
    assert _claim(db, "w2", NOW + 1) == []
    [again] = _claim(db, "w2", NOW + LEASE + 1)

    assert (again.id, again.attempt, again.number) == (handed.id, 2, 2)
    assert [a.outcome for a in db.attempts(handed.id)] == ["lost"]


def test_a_run_is_dead_when_its_attempts_are_used_up_by_lost_leases(db: StoreDb) -> None:
    [run_id] = _store_runs(db, "mail", max_attempts=2)
    _claim(db, "w1", NOW)
    _claim(db, "w2", NOW + 10)

    assert _claim(db, "w3", NOW + 20) == []

    dead = db.run(run_id)
    assert dead.status == "dead"
    assert dead.worker is None
    assert "no attempts are left" in dead.last_error
    assert [(a.number, a.outcome, a.worker) for a in db.attempts(run_id)] == [
        (1, "lost", "w1"),
        (2, "lost", "w2"),
    ]


def test_an_outcome_from_a_worker_that_lost_its_lease_is_ignored(db: StoreDb) -> None:
    [run_id] = _store_runs(db, "mail")
    [stale] = _claim(db, "w1", NOW)
    [current] = _claim(db, "w2", NOW + LEASE + 1)

    # The first worker was only slow: it reports after the second took the run over.
    _finish(db, stale, "succeeded", NOW + LEASE + 2)

    row = db.run(run_id)
    assert (_shown(db, run_id), row.worker, row.attempts) == ("running", "w2", 2)
    _finish(db, current, "failed", NOW + LEASE + 3, due_at=NOW + 100, error="boom")
    row = db.run(run_id)
    assert (row.status, row.last_error, row.due_at) == ("failed", "boom", NOW + 100)
    history = db.attempts(run_id)
    assert [(a.number, a.worker, a.outcome) for a in history] == [
        (1, "w1", "succeeded"),  # the late report replaces the guess that it was lost
        (2, "w2", "failed"),
    ]
    assert history[0].error == "reported after its run was taken back from it", (
        "the history still shows that another worker took the run over"
    )
    assert history[1].error == "boom"


def test_outcomes_succeeded_and_dead_end_the_run(db: StoreDb) -> None:
    ok_id, dead_id = _store_runs(db, "mail", "mail")
    ok, dead = sorted(_claim(db, "w1", NOW), key=lambda run: run.id != ok_id)

    _finish(db, ok, "succeeded", NOW + 1)
    _finish(db, dead, "dead", NOW + 1, error="RuntimeError: nope", traceback="Traceback ...")

    succeeded = db.run(ok_id)
    assert (succeeded.status, succeeded.worker, succeeded.finished_at) == (
        "succeeded",
        None,
        NOW + 1,
    )
    assert succeeded.duration == pytest.approx(0.5)
    assert db.run(dead_id).status == "dead"
    [attempt] = db.attempts(dead_id)
    assert (attempt.outcome, attempt.error, attempt.traceback) == (
        "failed",  # the attempt failed; the run is dead because none are left
        "RuntimeError: nope",
        "Traceback ...",
    )
    assert _claim(db, "w1", NOW + 1000) == []


def test_replay_makes_a_finished_run_due_with_fresh_attempts(db: StoreDb) -> None:
    [run_id] = _store_runs(db, "mail", max_attempts=1)
    [run] = _claim(db, "w1", NOW)
    _finish(db, run, "dead", NOW + 1, error="boom")

    assert db.apply(replay_run, [run_id], NOW + 50) == ["dead"]

    row = db.run(run_id)
    assert (row.status, row.attempts, row.total_attempts, row.due_at) == (
        "pending",
        0,
        1,
        NOW + 50,
    )
    [again] = _claim(db, "w1", NOW + 50)
    assert (again.attempt, again.number, again.max_attempts) == (1, 2, 1)
    _finish(db, again, "succeeded", NOW + 51)
    assert db.apply(replay_run, [run_id], NOW + 60) == ["succeeded"]
    assert db.run(run_id).status == "pending"


def test_replay_leaves_open_runs_alone_and_knows_no_strangers(db: StoreDb) -> None:
    pending, running = _store_runs(db, "mail", "other")
    _claim(db, "w1", NOW, limit=1)
    [held] = [r for r in (db.run(pending), db.run(running)) if r.worker is not None]
    waiting = pending if held.id == running else running

    assert db.apply(replay_run, [waiting, held.id, "no-such-run"], NOW + 1) == [
        "pending",
        "running",
        None,
    ]
    assert db.run(held.id).worker == "w1"


def test_replay_dead_replays_every_dead_run_of_one_handler(db: StoreDb) -> None:
    ids = [_store_runs(db, "mail", "other", max_attempts=1) for _ in range(3)]
    for run in _claim(db, "w1", NOW):
        _finish(db, run, "dead", NOW + 1)
    mail_ids = [pair[0] for pair in ids]

    assert db.apply(replay_dead, ["mail"], NOW + 2) == [3]

    assert {db.run(run_id).status for run_id in mail_ids} == {"pending"}
    assert {db.run(pair[1]).status for pair in ids} == {"dead"}
    assert db.apply(replay_dead, ["mail", "nobody"], NOW + 3) == [0, 0]


def test_held_runs_are_never_claimed_until_their_registration_is_released(
    db: StoreDb,
) -> None:
    completion = new_completion("mail")
    held = dataclasses.replace(completion.runs[0], handler="broken", held=True)
    item = dataclasses.replace(completion, runs=(*completion.runs, held))
    [receipt] = db.apply(insert_checkins, [item], NOW)
    assert [(run.handler, run.status) for run in receipt.runs] == [
        ("mail", "pending"),
        ("broken", "held"),
    ]
    mail_id, broken_id = (run.id for run in receipt.runs)

    assert [run.id for run in _claim(db, "w1", NOW + 3600)] == [mail_id]
    assert _shown(db, broken_id) == "held"
    assert db.apply(replay_run, [broken_id], NOW) == ["held"], "replay leaves it held"

    assert db.apply(queue.release_held, [("broken", 7), ("mail", 1)], NOW + 10) == [1, 0]
    row = db.run(broken_id)
    assert (row.status, row.max_attempts, row.due_at) == ("pending", 7, NOW + 10)
    [claimed] = _claim(db, "w1", NOW + 10)
    assert (claimed.id, claimed.max_attempts) == (broken_id, 7)


def test_runs_given_back_wait_again_as_if_never_taken(db: StoreDb) -> None:
    [a], [b], [c] = (_store_runs(db, "mail") for _ in range(3))
    [first] = _claim(db, "w1", NOW, limit=1)
    assert first.id == a
    _finish(db, first, "failed", NOW + 1, due_at=NOW + 2, error="SMTP 451")
    assert {run.id for run in _claim(db, "w1", NOW + 3)} == {a, b, c}

    given = db.apply(queue.give_back_runs, [("w1", [a, b]), ("w2", [c])], NOW + 4)

    assert given == [2, 0], "only the runs w1 holds; w2 holds none"
    retry, fresh = db.run(a), db.run(b)
    assert (retry.status, retry.worker, retry.attempts, retry.total_attempts) == (
        "failed",
        None,
        1,
        1,
    )
    assert (fresh.status, fresh.worker, fresh.attempts, fresh.due_at) == (
        "pending",
        None,
        0,
        NOW + 4,
    )
    assert db.run(c).worker == "w1", "still held: w2 never had it"
    again = {run.id: run for run in _claim(db, "w2", NOW + 5)}
    assert set(again) == {a, b}
    assert (again[a].attempt, again[b].attempt) == (2, 1), "the attempts they were at"
    assert [x.outcome for x in db.attempts(a)] == ["failed"], "no lost attempt recorded"


def test_a_replay_waiting_on_a_claim_of_the_runs_retry_leaves_it_to_that_claim(
    pg_database: str,
) -> None:
    """PostgreSQL: a worker of another node claims a failed run's due retry while an
    operator replays it. The replay waits for the claim's lock, then must see the run
    held (busy), not reset it under the attempt under way (it ran twice at once)."""
    engine = connect(pg_database)
    queue_upgrade(engine)
    db = StoreDb(engine)
    try:
        [run_id] = _store_runs(db, "mail")
        [run] = _claim(db, "w1", NOW)
        _finish(db, run, "failed", NOW + 1, due_at=NOW + 2, error="boom")
        with ThreadPoolExecutor(1) as pool, engine.connect() as claimer:
            with claimer.begin():
                request = ClaimRequest("w2", 10, {"mail": LEASE}, 60.0)
                [[retry]] = claim_runs(claimer, [request], NOW + 3)
                replay = pool.submit(db.apply, replay_run, [run_id], NOW + 3)
                assert not _finished_within(replay, 0.5), "the replay waits for the claim"
            answer = replay.result(10)
        assert answer == ["running"], "busy: another node holds it now"
        row = db.run(run_id)
        assert (retry.id, row.worker, row.attempts) == (run_id, "w2", 2)
    finally:
        engine.dispose()


def _finished_within(future: Any, seconds: float) -> bool:
    try:
        future.result(seconds)
    except TimeoutError:
        return False
    return True
