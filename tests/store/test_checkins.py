"""Storing completion reports: dedupe, computed retry counts, one run per planned handler."""

from __future__ import annotations

import uuid
from typing import Any

from support.reports import AGENT_A, AGENT_B, INVENTORY, new_completion
from support.storedb import StoreDb

from jobhooks.store.checkins import insert_checkins
from jobhooks.store.tables import completions, job_types, runs

NOW = 1_800_000_000.0


def test_each_report_gets_a_completion_and_a_pending_run_per_planned_handler(db: StoreDb) -> None:
    item = new_completion("mail", "webhook", max_attempts=4)

    [receipt] = db.apply(insert_checkins, [item], NOW)

    assert receipt.duplicate is False
    assert [(r.handler, r.status) for r in receipt.runs] == [
        ("mail", "pending"),
        ("webhook", "pending"),
    ]
    stored = db.completion(receipt.id)
    assert stored.job_id == str(item.fields["job_id"])
    assert stored.received_at == NOW
    for run in receipt.runs:
        row = db.run(run.id)
        assert row.completion_id == receipt.id
        assert row.status == "pending"
        assert row.attempts == 0
        assert row.max_attempts == 4
        assert row.due_at == NOW
        assert row.worker is None


def test_a_report_no_handler_matches_is_stored_without_runs(db: StoreDb) -> None:
    [receipt] = db.apply(insert_checkins, [new_completion()], NOW)

    assert receipt.runs == []
    assert db.count(completions) == 1
    assert db.count(runs) == 0


def test_a_repeated_idempotency_key_answers_the_original(db: StoreDb) -> None:
    [first] = db.apply(insert_checkins, [new_completion("mail", key="k-1")], NOW)
    [again] = db.apply(insert_checkins, [new_completion("mail", key="k-1")], NOW + 5)

    assert again.duplicate is True
    assert again.id == first.id
    assert [r.id for r in again.runs] == [r.id for r in first.runs]
    assert db.count(completions) == 1
    assert db.count(runs) == 1


def test_an_idempotency_key_belongs_to_its_agent(db: StoreDb) -> None:
    [a] = db.apply(insert_checkins, [new_completion("mail", key="shared", agent_id=AGENT_A)], NOW)
    [b] = db.apply(insert_checkins, [new_completion("mail", key="shared", agent_id=AGENT_B)], NOW)

    assert b.duplicate is False
    assert b.id != a.id
    assert db.count(completions) == 2


def test_a_repeated_job_history_id_of_the_same_agent_answers_the_original(db: StoreDb) -> None:
    [first] = db.apply(insert_checkins, [new_completion("mail", job_history_id=2170)], NOW)
    [again] = db.apply(
        insert_checkins, [new_completion("mail", job_history_id=2170, message="again")], NOW
    )
    [other] = db.apply(
        insert_checkins, [new_completion("mail", job_history_id=2170, agent_id=AGENT_B)], NOW
    )

    assert (again.id, again.duplicate) == (first.id, True)
    assert other.duplicate is False
    assert db.completion(first.id).message == "Access denied to store /etc/ssl"
    assert db.count(completions) == 2
    assert db.count(runs) == 2


def test_repeats_within_one_batch_answer_the_first(db: StoreDb) -> None:
    batch = [
        new_completion("mail", key="k"),
        new_completion("mail", job_history_id=7),
        new_completion("mail", key="k"),
        new_completion("mail", job_history_id=7),
        new_completion("mail", key="other", job_history_id=7),
    ]

    receipts = db.apply(insert_checkins, batch, NOW)

    assert [r.duplicate for r in receipts] == [False, False, True, True, True]
    assert receipts[2].id == receipts[0].id
    assert receipts[3].id == receipts[1].id
    assert receipts[4].id == receipts[1].id
    assert [r.id for r in receipts[2].runs] == [r.id for r in receipts[0].runs]
    assert db.count(completions) == 2
    assert db.count(runs) == 2


def test_a_large_batch_finds_the_repeats_of_many_agents_among_stored_reports(
    db: StoreDb,
) -> None:
    # 300 agents (more than one lookup used to take), keys with the characters JSON
    # escapes, history ids up to the column's limit; half of them repeat stored reports.
    agents = [uuid.uuid4() for _ in range(300)]
    keys = [f'k "{n}"\\/' for n in range(300)]
    histories = [2**63 - 1 - n for n in range(300)]

    def keyed() -> list[Any]:
        """One report per agent: by key for odd ones, by history id for even ones."""
        return [
            new_completion(
                "mail",
                agent_id=agent,
                key=key if n % 2 else None,
                job_history_id=None if n % 2 else history,
            )
            for n, (agent, key, history) in enumerate(zip(agents, keys, histories, strict=True))
        ]

    stored = db.apply(insert_checkins, keyed(), NOW)
    batch = keyed() + [
        new_completion("mail", agent_id=agent, key=key + "new", job_history_id=history - 500)
        for agent, key, history in zip(agents, keys, histories, strict=True)
    ]

    receipts = db.apply(insert_checkins, batch, NOW + 5)

    assert [r.duplicate for r in receipts] == [True] * 300 + [False] * 300
    assert [r.id for r in receipts[:300]] == [r.id for r in stored]
    assert db.count(completions) == 600
    assert db.count(runs) == 600


def test_reports_without_a_key_or_history_id_are_never_merged(db: StoreDb) -> None:
    job_id = uuid.uuid4()
    same = [new_completion("mail", job_id=job_id) for _ in range(3)]

    receipts = db.apply(insert_checkins, same, NOW)
    receipts += db.apply(insert_checkins, [new_completion("mail", job_id=job_id)], NOW)

    assert len({r.id for r in receipts}) == 4
    assert not any(r.duplicate for r in receipts)
    assert db.count(runs) == 4


def _counts(db: StoreDb, results: list[str], job_id: uuid.UUID, batched: bool) -> list[int]:
    items = [
        new_completion(job_id=job_id, job_result=result, current_retry_count=None)
        for result in results
    ]
    if batched:
        receipts = db.apply(insert_checkins, items, NOW)
    else:
        receipts = [db.apply(insert_checkins, [item], NOW)[0] for item in items]
    rows = [db.completion(r.id) for r in receipts]
    assert all(row.retry_count_computed for row in rows)
    return [row.current_retry_count for row in rows]


def test_an_omitted_retry_count_counts_consecutive_earlier_failures(db: StoreDb) -> None:
    results = ["Failure", "Failure", "Failure", "Success", "Failure", "Warning", "Failure"]

    assert _counts(db, results, uuid.uuid4(), batched=False) == [0, 1, 2, 3, 0, 1, 0]
    assert _counts(db, results, uuid.uuid4(), batched=True) == [0, 1, 2, 3, 0, 1, 0]


def test_retry_counts_are_per_job(db: StoreDb) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()

    assert _counts(db, ["Failure", "Failure"], first, batched=False) == [0, 1]
    assert _counts(db, ["Failure"], second, batched=False) == [0]
    assert _counts(db, ["Failure"], first, batched=False) == [2]


def test_a_given_retry_count_is_kept_and_the_streak_still_counts(db: StoreDb) -> None:
    job_id = uuid.uuid4()
    [given] = db.apply(
        insert_checkins,
        [new_completion(job_id=job_id, job_result="Failure", current_retry_count=9)],
        NOW,
    )

    assert db.completion(given.id).current_retry_count == 9
    assert db.completion(given.id).retry_count_computed is False
    assert _counts(db, ["Failure"], job_id, batched=False) == [1]


def test_a_duplicate_does_not_advance_the_retry_count(db: StoreDb) -> None:
    job_id = uuid.uuid4()
    failure: dict[str, Any] = {
        "job_id": job_id,
        "job_result": "Failure",
        "current_retry_count": None,
    }
    db.apply(insert_checkins, [new_completion(key="once", **failure)], NOW)
    db.apply(insert_checkins, [new_completion(key="once", **failure)], NOW)

    assert _counts(db, ["Failure"], job_id, batched=False) == [1]


def test_job_types_seen_are_recorded_once(db: StoreDb) -> None:
    items = [new_completion(job_type="Inventory", job_type_id=INVENTORY) for _ in range(3)]

    db.apply(insert_checkins, items, NOW)
    db.apply(insert_checkins, [new_completion(job_type_id=INVENTORY)], NOW + 1)

    assert db.count(job_types, job_types.c.id == str(INVENTORY)) == 1


def test_runs_handed_to_the_local_worker_are_leased_to_it(db: StoreDb) -> None:
    reserved: list[int] = []

    def reserve(count: int) -> tuple[str, int]:
        reserved.append(count)
        return "local-worker", min(count, 1)

    [receipt] = db.apply(
        lambda c, items, now: insert_checkins(c, items, now, reserve=reserve),
        [new_completion("mail", "webhook", lease=12.0)],
        NOW,
    )

    assert reserved == [2], "asked once for a slot per planned run"
    [handed] = receipt.handed_off
    assert handed.handler == "mail"
    assert handed.worker == "local-worker"
    assert handed.fields["completion_id"] == receipt.id
    leased = db.run(handed.id)
    assert leased.status == "pending"
    assert leased.worker == "local-worker"
    assert leased.lease_until == NOW + 12.0
    other = db.run(next(r.id for r in receipt.runs if r.handler == "webhook"))
    assert other.worker is None
