"""Digests in the store, on both databases: completions that fire a registration with
``group_by`` collect into one run per group, in the check-in's transaction, and a worker
that takes the run gets every one of them, exactly once."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.intake.rules import NotificationRule
from jobhooks.registry import WhenRules
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.digests import shorten_digests
from jobhooks.store.engine import connect
from jobhooks.store.queue import ClaimRequest, claim_runs
from jobhooks.store.records import CheckinReceipt, ClaimedRun, DigestPlan, RunStatus
from jobhooks.store.tables import digest_members, open_digests, runs

NOW = 1_800_000_000.0
BY_MACHINE = DigestPlan(("client_machine",), 30.0, 100)


def fail_on(
    db: StoreDb, machine: str, at: float, plan: DigestPlan = BY_MACHINE, **fields: Any
) -> CheckinReceipt:
    """One failure on ``machine`` stored at ``at`` for "digest" (grouped) and "log"."""
    item = new_completion(
        "digest", "log", digests={"digest": plan}, client_machine=machine, **fields
    )
    [receipt] = db.apply(insert_checkins, [item], at)
    return receipt


def digest_of(receipt: CheckinReceipt) -> Any:
    [run] = [run for run in receipt.runs if run.handler == "digest"]
    return run


def claim(db: StoreDb, at: float, limit: int = 50) -> list[ClaimedRun]:
    request = ClaimRequest("worker-1", limit, {}, 30.0)
    [claimed] = db.apply(claim_runs, [request], at)
    return [run for run in claimed if run.handler == "digest"]


def test_a_burst_on_one_machine_is_one_digest_per_machine(db: StoreDb) -> None:
    first = fail_on(db, "orch01", NOW)
    others = [fail_on(db, "orch01", NOW + n) for n in range(1, 5)]
    elsewhere = fail_on(db, "orch02", NOW + 2)

    digest = digest_of(first)
    assert digest.status == RunStatus.COLLECTING
    assert digest.closes_at == NOW + 30
    assert {digest_of(r).id for r in others} == {digest.id}
    assert digest_of(elsewhere).id != digest.id
    # A registration without group_by still runs once per completion.
    assert all(len([r for r in x.runs if r.handler == "log"]) == 1 for x in [first, *others])
    assert db.count(runs, runs.c.handler == "digest") == 2
    with db.engine.connect() as connection:
        members = connection.execute(
            select(digest_members.c.completion_id)
            .where(digest_members.c.run_id == digest.id)
            .order_by(digest_members.c.position)
        ).scalars()
        assert list(members) == [first.id, *(r.id for r in others)]


def test_nothing_is_delivered_before_the_window_closes_then_all_of_it_oldest_first(
    db: StoreDb,
) -> None:
    receipts = [
        fail_on(db, "orch01", NOW + n, job_type=f"Job{n}", message=f"failure {n}") for n in range(3)
    ]

    assert claim(db, NOW + 29.9) == []
    [run] = claim(db, NOW + 30)
    group = run.fields["group"]
    assert [member["completion_id"] for member in group] == [r.id for r in receipts]
    assert [member["message"] for member in group] == ["failure 0", "failure 1", "failure 2"]
    # The run's own fields are the newest completion's.
    assert run.fields["completion_id"] == receipts[-1].id
    assert run.fields["job_type"] == "Job2"
    assert db.run(run.id).status == RunStatus.PENDING  # taken: no longer collecting


def test_a_completion_after_the_window_or_the_claim_opens_the_next_digest(db: StoreDb) -> None:
    first = digest_of(fail_on(db, "orch01", NOW))
    late = digest_of(fail_on(db, "orch01", NOW + 31))
    assert late.id != first.id and late.closes_at == NOW + 61

    assert [run.id for run in claim(db, NOW + 40)] == [first.id]
    assert digest_of(fail_on(db, "orch01", NOW + 45)).id == late.id
    [taken] = claim(db, NOW + 61)
    assert taken.id == late.id and len(taken.fields["group"]) == 2
    # A node whose clock is a second behind still finds the digest closed by the claim.
    after_claim = digest_of(fail_on(db, "orch01", NOW + 60))
    assert after_claim.id not in (first.id, late.id)
    assert db.count(open_digests) == 1


def test_a_full_digest_takes_no_more(db: StoreDb) -> None:
    small = DigestPlan(("client_machine",), 30.0, 3)
    ids = [digest_of(fail_on(db, "orch01", NOW + n, plan=small)).id for n in range(7)]
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5] != ids[6]


def test_one_digest_for_the_registration_and_grouping_by_result(db: StoreDb) -> None:
    everything = DigestPlan((), 30.0, 100)
    by_result = DigestPlan(("job_result",), 30.0, 100)
    a = digest_of(fail_on(db, "orch01", NOW, plan=everything)).id
    b = digest_of(fail_on(db, "orch02", NOW + 1, plan=everything)).id
    assert a == b
    failed = digest_of(fail_on(db, "x", NOW + 2, plan=by_result, job_result="Failure")).id
    warned = digest_of(fail_on(db, "x", NOW + 3, plan=by_result, job_result="Warning")).id
    assert failed != warned


def test_a_digest_only_holds_what_fired(db: StoreDb) -> None:
    page = NotificationRule(WhenRules(("failure-streak",), 2, None))
    job = uuid.uuid4()
    receipts = []
    for n in range(4):
        item = new_completion(
            "digest",
            rules={"digest": page},
            digests={"digest": BY_MACHINE},
            job_id=job,
            current_retry_count=None,
        )
        receipts += db.apply(insert_checkins, [item], NOW + n)
    assert [len(r.runs) for r in receipts] == [0, 1, 0, 0]
    [run] = claim(db, NOW + 40)
    [member] = run.fields["group"]
    assert member["trigger"].kind == "failure-streak"
    assert run.fields["trigger"].kind == "failure-streak"


def test_a_duplicate_report_answers_with_the_digest_it_joined(db: StoreDb) -> None:
    item = new_completion("digest", key="k-1", digests={"digest": BY_MACHINE})
    [first] = db.apply(insert_checkins, [item], NOW)
    [again] = db.apply(insert_checkins, [item], NOW + 1)
    assert again.duplicate and again.id == first.id
    assert [(r.id, r.status, r.closes_at) for r in again.runs] == [
        (first.runs[0].id, RunStatus.COLLECTING, NOW + 30)
    ]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_nodes_adding_to_one_group_at_once_make_one_digest(store_url: str) -> None:
    nodes = [StoreDb(connect(store_url)) for _ in range(2)]
    start = threading.Barrier(2)
    seen: list[str] = []
    lock = threading.Lock()

    def node(db: StoreDb) -> None:
        start.wait()
        for n in range(15):
            receipt = fail_on(db, "orch01", NOW + n * 0.1)
            with lock:
                seen.append(digest_of(receipt).id)

    threads = [threading.Thread(target=node, args=(db,)) for db in nodes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(seen) == 30
        assert len(set(seen)) == 1, "one digest, not one per node"
        assert nodes[0].count(digest_members) == 30
    finally:
        for db in nodes:
            db.engine.dispose()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_claim_racing_check_ins_delivers_each_completion_exactly_once(store_url: str) -> None:
    """Check-ins join a group's digest while workers on other connections claim it: every
    completion ends up in exactly one digest, and each claimed digest delivers what it
    holds, nothing joining it after the claim."""
    short = DigestPlan(("client_machine",), 0.5, 1000)
    intake = StoreDb(connect(store_url))
    workers = [StoreDb(connect(store_url)) for _ in range(2)]
    delivered: dict[str, list[str]] = {}
    stored: list[str] = []
    done = threading.Event()
    lock = threading.Lock()
    clock = {"now": NOW}

    def check_ins() -> None:
        for _ in range(200):
            with lock:
                clock["now"] += 0.05
                now = clock["now"]
            stored.append(fail_on(intake, "orch01", now, plan=short).id)
        done.set()

    def worker(db: StoreDb) -> None:
        rng = random.Random(7)
        while not done.is_set():
            with lock:
                now = clock["now"] + rng.random()
            for run in claim(db, now):
                delivered[run.id] = [m["completion_id"] for m in run.fields["group"]]
        for run in claim(db, clock["now"] + 10):
            delivered[run.id] = [m["completion_id"] for m in run.fields["group"]]

    threads = [threading.Thread(target=check_ins)]
    threads += [threading.Thread(target=worker, args=(db,)) for db in workers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        with intake.engine.connect() as connection:
            rows = connection.execute(
                select(digest_members.c.run_id, digest_members.c.completion_id)
            )
            held: dict[str, list[str]] = {}
            for run_id, completion_id in rows:
                held.setdefault(run_id, []).append(completion_id)
        assert len(delivered) > 1, "the race was not exercised"
        assert sorted(c for group in delivered.values() for c in group) == sorted(stored)
        for run_id, group in delivered.items():
            assert sorted(held[run_id]) == sorted(group), "a completion joined after the claim"
    finally:
        for db in [intake, *workers]:
            db.engine.dispose()


def test_a_shorter_group_wait_closes_the_collecting_digests_from_when_they_opened(
    db: StoreDb,
) -> None:
    day = DigestPlan(("client_machine",), 86_400.0, 100)
    opened = digest_of(fail_on(db, "orch01", NOW, day))
    late = digest_of(fail_on(db, "orch02", NOW + 3_000, day))

    counts = db.apply(shorten_digests, [("digest", 1_800.0), ("log", 1.0)], NOW + 3_100)

    assert counts == [2, 0]
    assert db.apply(shorten_digests, [("digest", 1_800.0)], NOW + 3_100) == [0]
    assert db.apply(shorten_digests, [("digest", 3_600.0)], NOW + 3_100) == [0], "only sooner"
    assert [run.id for run in claim(db, NOW + 1_799)] == []
    assert [run.id for run in claim(db, NOW + 1_800)] == [opened.id]
    assert digest_of(fail_on(db, "orch01", NOW + 1_801, day)).id != opened.id
    assert late.id not in [run.id for run in claim(db, NOW + 4_799)]
    assert late.id in [run.id for run in claim(db, NOW + 4_800)]
