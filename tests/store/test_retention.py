"""Retention: old completions go once every run of theirs has finished."""

from __future__ import annotations

import time

from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store.checkins import insert_checkins
from jobhooks.store.queue import ClaimRequest, claim_runs, finish_runs
from jobhooks.store.records import RunOutcome
from jobhooks.store.retention import purge_older_than
from jobhooks.store.tables import attempts, completions, runs


def _finish_all(db: StoreDb, status: str, now: float, limit: int) -> None:
    [claimed] = db.apply(claim_runs, [ClaimRequest("w1", limit, {}, 10.0)], now)
    outcomes = [
        RunOutcome(run.id, run.worker, run.number, status, now + 60, now, now + 0.1)
        for run in claimed
    ]
    db.apply(finish_runs, outcomes, now)


def test_old_finished_completions_are_purged_with_their_runs(db: StoreDb) -> None:
    now = time.time()
    [no_runs] = db.apply(insert_checkins, [new_completion()], now)
    [succeeded] = db.apply(insert_checkins, [new_completion("mail")], now)
    _finish_all(db, "succeeded", now, limit=1)
    [dead] = db.apply(insert_checkins, [new_completion("mail")], now)
    _finish_all(db, "dead", now, limit=1)
    [failed] = db.apply(insert_checkins, [new_completion("mail")], now)
    _finish_all(db, "failed", now, limit=1)
    [running] = db.apply(insert_checkins, [new_completion("mail")], now)
    db.apply(claim_runs, [ClaimRequest("w1", 1, {}, 10.0)], now)
    [pending] = db.apply(insert_checkins, [new_completion("mail", "other")], now)
    time.sleep(0.01)
    cutoff = time.time()
    time.sleep(0.01)
    [recent] = db.apply(insert_checkins, [new_completion("mail")], cutoff)
    _finish_all(db, "succeeded", cutoff, limit=1)

    assert db.apply(purge_older_than, [(cutoff, 100)], cutoff) == [3]

    kept = {failed.id, running.id, pending.id, recent.id}
    assert db.count(completions) == len(kept)
    for gone in (no_runs, succeeded, dead):
        assert db.count(completions, completions.c.id == gone.id) == 0
        assert db.count(runs, runs.c.completion_id == gone.id) == 0
    for receipt in (succeeded, dead):
        assert db.count(attempts, attempts.c.run_id == receipt.runs[0].id) == 0
    for receipt in (failed, running, pending, recent):
        assert db.count(runs, runs.c.completion_id == receipt.id) == len(receipt.runs)
    assert db.count(attempts, attempts.c.run_id == failed.runs[0].id) == 1


def test_purge_deletes_at_most_its_limit_at_a_time(db: StoreDb) -> None:
    now = time.time()
    db.apply(insert_checkins, [new_completion() for _ in range(5)], now)
    time.sleep(0.01)
    cutoff = time.time()

    counts = [db.apply(purge_older_than, [(cutoff, 2)], cutoff)[0] for _ in range(4)]

    assert counts == [2, 2, 1, 0]
    assert db.count(completions) == 0
