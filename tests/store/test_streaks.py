"""Streaks and rules in the store, on both databases: decided in the transaction that
stores each completion, kept across transactions, and counted once under concurrency."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select
from support.reports import AGENT_A, AGENT_B, new_completion
from support.storedb import StoreDb

from jobhooks.intake.rules import NotificationRule
from jobhooks.registry import WhenRules
from jobhooks.store import streaks
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.dialect import bind_list
from jobhooks.store.engine import connect
from jobhooks.store.records import CheckinReceipt
from jobhooks.store.tables import completions, job_streaks, rule_state, runs

NOW = 1_800_000_000.0
HOUR = 3600.0
PAGE = NotificationRule(WhenRules(("failure-streak", "still-failing", "recovered"), 3, 6 * HOUR))
LOG = None  # a registration without rules


def check_in(db: StoreDb, job: uuid.UUID, *results: str, at: float = NOW) -> list[CheckinReceipt]:
    """One transaction storing ``results`` of ``job`` in order, for "page" (with rules) and
    "log" (without), an hour apart."""
    items = [
        new_completion(
            "page",
            "log",
            rules={"page": PAGE, "log": LOG},
            job_id=job,
            job_result=result,
            current_retry_count=None,
        )
        for result in results
    ]
    receipts: list[CheckinReceipt] = []
    for index, item in enumerate(items):
        receipts += db.apply(insert_checkins, [item], at + index * HOUR)
    return receipts


def page_runs(receipts: Sequence[CheckinReceipt]) -> list[str | None]:
    """Per completion, the trigger kind of its "page" run (None when it had none)."""
    kinds = []
    for receipt in receipts:
        page = [run for run in receipt.runs if run.handler == "page"]
        kinds.append(page[0].trigger.kind if page and page[0].trigger else None)
        assert [run.handler for run in receipt.runs if run.handler == "log"] == ["log"]
    return kinds


def test_a_streak_fires_once_repeats_and_recovers_across_transactions(db: StoreDb) -> None:
    job = uuid.uuid4()
    failures = check_in(db, job, *["Failure"] * 9)
    recovered = check_in(db, job, "Success", at=NOW + 9 * HOUR)

    assert page_runs(failures) == [None, None, "failure-streak", *[None] * 5, "still-failing"]
    assert page_runs(recovered) == ["recovered"]
    assert [r.current_retry_count for r in failures] == list(range(9))
    [trigger] = [run.trigger for run in recovered[0].runs if run.handler == "page"]
    assert trigger is not None and trigger.streak == 9
    assert trigger.since is not None and trigger.since.timestamp() == NOW
    assert db.count(job_streaks) == 0 and db.count(rule_state) == 0, "forgotten with the streak"


def test_a_completion_that_fired_nothing_says_why_and_its_runs_say_why_they_exist(
    db: StoreDb,
) -> None:
    job = uuid.uuid4()
    _first, second, third = check_in(db, job, "Failure", "Failure", "Failure")

    with db.engine.connect() as connection:
        notes = dict(connection.execute(select(completions.c.id, completions.c.rule_notes)).all())
        of_third = select(runs.c.handler, runs.c.trigger).where(runs.c.completion_id == third.id)
        triggers = dict(connection.execute(of_third).all())
    assert json.loads(notes[second.id]) == [
        {"handler": "page", "reason": "not sent: 2nd consecutive failure, fires at 3"}
    ]
    assert notes[third.id] is None
    assert triggers["log"] is None
    assert json.loads(triggers["page"])["kind"] == "failure-streak"
    assert "3rd consecutive failure of Inventory job" in json.loads(triggers["page"])["reason"]


def test_a_streak_lowered_past_an_ongoing_streak_fires_at_the_next_failure_once(
    db: StoreDb,
) -> None:
    """A reload that lowers ``streak`` (or adds the registration) while a job fails: its
    streak is past the new Nth failure, which was never reached under that rule. The
    outage went unpaged until the job recovered and failed N times again."""
    job = uuid.uuid4()

    def report(rule: NotificationRule, result: str, hour: int) -> str | None:
        item = new_completion("page", rules={"page": rule}, job_id=job, job_result=result)
        (receipt,) = db.apply(insert_checkins, [item], NOW + hour * HOUR)
        (run,) = receipt.runs or [None]
        return run.trigger.kind if run and run.trigger else None

    at_5 = NotificationRule(WhenRules(("failure-streak", "recovered"), 5, None))
    at_3 = NotificationRule(WhenRules(("failure-streak", "recovered"), 3, None))
    assert [report(at_5, "Failure", hour) for hour in range(4)] == [None] * 4
    assert [report(at_3, "Failure", hour) for hour in range(4, 7)] == [
        "failure-streak", None, None
    ]  # fmt: skip
    assert report(at_3, "Success", 7) == "recovered"


def test_streaks_are_per_job_and_a_batch_is_stored_in_order(db: StoreDb) -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    batch = [
        new_completion("page", rules={"page": PAGE}, job_id=job, job_result=result)
        for job, result in [
            (one, "Failure"), (two, "Failure"), (one, "Failure"),
            (one, "Failure"), (two, "Success"), (one, "Success"),
        ]
    ]  # fmt: skip
    receipts = db.apply(insert_checkins, batch, NOW)
    kinds = [r.runs[0].trigger.kind if r.runs and r.runs[0].trigger else None for r in receipts]
    assert kinds == [None, None, None, "failure-streak", None, "recovered"]


def test_another_agents_reports_of_a_job_id_neither_add_to_its_streak_nor_end_it(
    db: StoreDb,
) -> None:
    """A job is its agent's: a report of the same job id from another agent (its token is
    its own) cannot silence the job's alert with a success, nor raise it early."""
    job = uuid.uuid4()

    def report_of(agent: uuid.UUID, result: str) -> list[CheckinReceipt]:
        item = new_completion(
            "page",
            rules={"page": PAGE},
            agent_id=agent,
            job_id=job,
            job_result=result,
            current_retry_count=None,
        )
        return db.apply(insert_checkins, [item], NOW)

    kinds, counts = [], []
    for agent, result in [
        (AGENT_A, "Failure"), (AGENT_B, "Failure"), (AGENT_A, "Failure"),
        (AGENT_B, "Success"), (AGENT_A, "Failure"),
    ]:  # fmt: skip
        (receipt,) = report_of(agent, result)
        counts.append(receipt.current_retry_count)
        kinds.append(receipt.runs[0].trigger.kind if receipt.runs else None)

    assert counts == [0, 0, 1, 1, 2], "each agent's own count"
    assert kinds == [None, None, None, None, "failure-streak"], "A's third failure fires"


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_failures_of_one_job_stored_by_two_nodes_at_once_are_each_counted_once(
    store_url: str,
) -> None:
    """Two connections (two API nodes) store failures of the same job concurrently: the
    streak counts every one, and the 3rd fires the rule exactly once."""
    job = uuid.uuid4()
    nodes = [StoreDb(connect(store_url)) for _ in range(2)]
    start = threading.Barrier(2)
    counts: list[int] = []
    fired: list[Any] = []
    lock = threading.Lock()

    def node(db: StoreDb) -> None:
        start.wait()
        for _ in range(10):
            [receipt] = db.apply(
                insert_checkins,
                [
                    new_completion(
                        "page", rules={"page": PAGE}, job_id=job, current_retry_count=None
                    )
                ],
                NOW,
            )
            with lock:
                counts.append(receipt.current_retry_count)
                fired.extend(run for run in receipt.runs if run.trigger is not None)

    threads = [threading.Thread(target=node, args=(db,)) for db in nodes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for db in nodes:
            db.engine.dispose()
    assert sorted(counts) == list(range(20)), "each failure counted once"
    assert [run.trigger.streak for run in fired] == [3]


@pytest.mark.parametrize("read", ["streaks", "fired"])
def test_a_batchs_streaks_are_found_through_the_key_not_a_scan(db: StoreDb, read: str) -> None:
    """Every batch reads its jobs' streaks: a scan would grow with every job in a streak."""
    with db.engine.connect() as connection:
        statement = streaks._statements(connection.dialect.name)[read]
        compiled = statement.compile(dialect=connection.dialect)
        explain = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
        params = {"jobs": bind_list(connection.dialect.name, [str(uuid.uuid4())])}
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
        values = compiled.construct_params(params)
        if compiled.positional:
            values = tuple(values[name] for name in compiled.positiontup or ())
        plan = connection.exec_driver_sql(explain + str(compiled), values).fetchall()
    text = " ".join(str(row) for row in plan)
    assert "SCAN job_streaks" not in text and "SCAN rule_state" not in text, text
    assert "Seq Scan" not in text, text
