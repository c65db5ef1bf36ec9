"""The summaries check-ins keep and the read model built on them, on both databases."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, update
from support.reports import AGENT_A, AGENT_B, INVENTORY, MANAGEMENT, new_completion
from support.storedb import StoreDb

from jobhooks.store import reads
from jobhooks.store.catalog import job_type_names, job_type_page
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.migrate import upgrade
from jobhooks.store.reads import CompletionFilter
from jobhooks.store.retention import purge_older_than
from jobhooks.store.tables import agent_summary, completion_stats, runs

NOW = float(int(time.time()) // 3600 * 3600)
"""The start of this hour: the store's ids come from the clock, its buckets from ``now``."""


def _stats(db: StoreDb) -> dict[tuple[str, int, str, int], int]:
    c = completion_stats.c
    with db.engine.connect() as connection:
        rows = connection.execute(select(c.dimension, c.bucket, c.subject, c.job_result, c.count))
        totals: dict[tuple[str, int, str, int], int] = {}
        for dimension, bucket, subject, result, count in rows:
            key = (dimension, int(bucket), subject, int(result))
            totals[key] = totals.get(key, 0) + int(count)
    return totals


def _store(db: StoreDb, now: float, *items: Any) -> list[Any]:
    return db.apply(insert_checkins, list(items), now)


def test_check_ins_count_completions_by_minute_job_type_and_agent(db: StoreDb) -> None:
    _store(
        db,
        NOW + 10,
        new_completion("h", job_result="Failure"),
        new_completion("h", job_result="Success", client_machine="orch01-new.example.com"),
        new_completion("h", agent_id=AGENT_B, job_result="Failure", job_type_id=MANAGEMENT),
    )
    receipts = _store(db, NOW + 70, new_completion("h", job_result="Failure"))
    stats = _stats(db)
    assert stats[("all", int(NOW), "", 4)] == 2
    assert stats[("all", int(NOW), "", 2)] == 1
    assert stats[("all", int(NOW) + 60, "", 4)] == 1
    assert stats[("type", int(NOW), str(INVENTORY), 4)] == 2
    assert stats[("type", int(NOW), str(MANAGEMENT), 4)] == 1
    assert stats[("agent", int(NOW), str(AGENT_A), 4)] == 2
    assert stats[("agent", int(NOW), str(AGENT_B), 4)] == 1
    with db.engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(select(agent_summary))}
    a = rows[str(AGENT_A)]
    assert (a.completions, a.failures, a.first_seen, a.last_seen) == (3, 2, NOW + 10, NOW + 70)
    assert a.last_completion_id == receipts[0].id
    assert a.client_machine == "orch01.example.com"  # the newest report's machine
    assert (rows[str(AGENT_B)].completions, rows[str(AGENT_B)].failures) == (1, 1)


def test_a_duplicate_report_counts_once(db: StoreDb) -> None:
    _store(db, NOW, new_completion("h", key="k1"))
    _store(db, NOW + 1, new_completion("h", key="k1"))
    assert sum(_stats(db).values()) == 3  # one completion, in three dimensions


def test_the_overview_reads_the_summaries_and_the_runs(db: StoreDb) -> None:
    receipts = _store(
        db,
        NOW - 30,
        new_completion("mail", "log", job_result="Failure"),
        new_completion("log", agent_id=AGENT_B, job_result="Success"),
    )
    with db.engine.begin() as connection:
        connection.execute(
            update(runs)
            .where(runs.c.id == receipts[0].runs[0].id)
            .values(status="dead", last_error="SMTP said no", finished_at=NOW - 5)
        )
        connection.execute(update(runs).where(runs.c.handler == "log").values(status="succeeded"))
    data = db.read(reads.overview, NOW, "1h", ["log", "mail"], {str(INVENTORY): "SSL"}).as_json()
    assert data["chart"]["totals"] == {4: 1, 2: 1}
    assert sum(sum(bar["counts"].values()) for bar in data["chart"]["bars"]) == 2
    assert [(row["name"], row["failures"], row["total"]) for row in data["by_type"]] == [
        ("SSL", 1, 2)
    ]
    assert [row["id"] for row in data["by_agent"]] == [str(AGENT_A), str(AGENT_B)]
    assert data["by_agent"][0]["rate"] == 1.0
    assert data["runs_now"]["dead"] == 1
    assert data["runs_recent"] == {"succeeded": 2, "dead": 1}
    health = {item["name"]: item for item in data["handlers"]}
    assert health["log"]["success_rate"] == 1.0
    assert health["mail"]["success_rate"] == 0.0
    assert health["mail"]["last_error"]["error"] == "SMTP said no"
    assert health["mail"]["last_error"]["completion_id"] == receipts[0].id


def test_completions_page_by_id_and_filter_by_agent_machine_and_result(db: StoreDb) -> None:
    stored = []
    for index in range(7):
        agent = AGENT_A if index % 2 == 0 else AGENT_B
        result = "Failure" if index % 3 == 0 else "Success"
        stored += _store(db, NOW + index, new_completion(agent_id=agent, job_result=result))
    ids = [receipt.id for receipt in stored][::-1]
    first = db.read(reads.completion_page, CompletionFilter(), limit=3)
    assert [item.id for item in first.items] == ids[:3]
    second = db.read(reads.completion_page, CompletionFilter(), limit=3, before=first.next)
    assert [item.id for item in second.items] == ids[3:6]
    by_agent = db.read(reads.completion_page, CompletionFilter(agent_id=AGENT_B))
    assert [item.id for item in by_agent.items] == ids[1:6:2]
    assert by_agent.next is None
    failures = db.read(
        reads.completion_page,
        CompletionFilter(agent_id=AGENT_A, result=4),  # type: ignore[arg-type]
    )
    assert [item.id for item in failures.items] == [ids[0], ids[6]]
    machine = db.read(reads.completion_page, CompletionFilter(client_machine="orch01.example.com"))
    assert len(machine.items) == 7
    unknown = db.read(reads.completion_page, CompletionFilter(agent_id=uuid.uuid4()))
    assert unknown.items == [] and unknown.next is None


def test_a_filtered_page_looks_through_a_bounded_window(
    db: StoreDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "SCAN_WINDOW", 4)
    stored = []
    for index in range(10):
        agent = AGENT_B if index == 0 else AGENT_A
        stored += _store(db, NOW + index, new_completion(agent_id=agent))
    rare = CompletionFilter(client_machine="orch01.example.com", job_type_id=MANAGEMENT)
    page = db.read(reads.completion_page, rare)
    assert page.items == []
    assert page.searched_to is not None and page.next is not None
    # The next page starts where the window ended, and so on to the oldest.
    seen = 0
    while page.next is not None:
        page = db.read(reads.completion_page, rare, before=page.next)
        seen += 1
    assert seen == 2
    # An agent filter starts at the agent's newest completion, however old.
    old = db.read(reads.completion_page, CompletionFilter(agent_id=AGENT_B))
    assert [item.id for item in old.items] == [stored[0].id]


def test_runs_are_listed_newest_first_across_handlers_and_statuses(db: StoreDb) -> None:
    receipts = [
        receipt
        for index in range(4)
        for receipt in _store(db, NOW + index, new_completion("alpha", "beta"))
    ]
    run_ids = [run.id for receipt in receipts for run in receipt.runs]
    with db.engine.begin() as connection:
        connection.execute(update(runs).where(runs.c.id.in_(run_ids[::3])).values(status="dead"))
    dead = db.read(reads.run_page, "dead", None, ["alpha", "beta"], limit=2)
    assert [item.id for item in dead.items] == sorted(run_ids[::3], reverse=True)[:2]
    rest = db.read(reads.run_page, "dead", None, ["alpha"], limit=2, before=dead.next)
    assert [item.id for item in rest.items] == sorted(run_ids[::3], reverse=True)[2:]
    beta = db.read(reads.run_page, None, "beta", [], limit=10)
    assert [item.id for item in beta.items] == sorted(run_ids[1::2], reverse=True)
    every = db.read(reads.run_page, None, None, [], limit=100)
    assert len(every.items) == 8


def test_agents_and_job_types_pages(db: StoreDb) -> None:
    _store(
        db,
        NOW,
        new_completion(job_result="Failure"),
        new_completion(agent_id=AGENT_B, job_result="Success"),
    )
    listed, total = db.read(reads.agents, NOW + 60)
    assert total == 2
    assert {row.id: row.last_day_rate for row in listed} == {
        str(AGENT_A): 1.0,
        str(AGENT_B): 0.0,
    }
    catalog = db.read(job_type_page, NOW + 60, 100)
    assert [(row.id, row.completions, row.failures) for row in catalog.items] == [
        (str(INVENTORY), 2, 1)
    ]
    assert db.read(job_type_names) == {str(INVENTORY): "Inventory"}


def test_retention_drops_old_buckets_and_agents(db: StoreDb) -> None:
    _store(db, NOW - 10 * 86400, new_completion(agent_id=AGENT_B))
    _store(db, NOW, new_completion())
    db.apply(purge_older_than, [(NOW - 86400, 100)], NOW)
    assert {key[2] for key in _stats(db) if key[0] == "agent"} == {str(AGENT_A)}
    with db.engine.connect() as connection:
        assert [row.id for row in connection.execute(select(agent_summary))] == [str(AGENT_A)]


def test_the_migration_counts_completions_stored_before_it(db: StoreDb) -> None:
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    _store(db, NOW + 5, new_completion(job_result="Failure"), new_completion(agent_id=AGENT_B))
    _store(db, NOW + 3700, new_completion(job_result="Success"))
    expected_stats = _stats(db)
    with db.engine.connect() as connection:
        expected_agents = {tuple(row) for row in connection.execute(select(agent_summary))}
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    upgrade(db.engine)
    assert _stats(db) == expected_stats
    with db.engine.connect() as connection:
        assert {tuple(row) for row in connection.execute(select(agent_summary))} == expected_agents
