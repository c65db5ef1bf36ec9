"""Upgrading a database that jobhooks processes run on: a migration the running (older)
version cannot work with is refused until they stop; additive ones go ahead.

Revision 0007 keys job_streaks and rule_state by agent: a jobhooks from before it,
still running, wrote streaks without an agent (ON CONFLICT on keys that no longer
exist), so every failed check-in it took was answered 503 until it was restarted.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from pg import pg_empty_database  # noqa: F401  (fixture)
from sqlalchemy import Engine

from jobhooks.errors import StoreError
from jobhooks.store.checkins import completion_row
from jobhooks.store.engine import connect
from jobhooks.store.migrate import current_revision, head_revision, upgrade
from jobhooks.store.nodes import STALE_AFTER
from jobhooks.store.tables import completions

NOW = 1_800_000_000.0
OTHER_NODE = "api-2:4242:0a0b0c0d"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_empty_database")
    return url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    engine = connect(empty_url)
    try:
        yield engine
    finally:
        engine.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def node_beating(engine: Engine, heartbeat_at: float, node_id: str = OTHER_NODE) -> None:
    """A serve on another machine, whose last heartbeat is ``heartbeat_at``."""
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO nodes (id, host, boot_id, pid, pid_started, started_at, heartbeat_at, "
            f"stopped_at) VALUES ('{node_id}', 'api-2', 'another boot', 4242, NULL, "
            f"{heartbeat_at - 600}, {heartbeat_at}, NULL)"
        )


def failing_streak(engine: Engine) -> tuple[str, str]:
    """A job of one agent in a failure streak, as a jobhooks at 0006 stored it."""
    agent, job = str(uuid.uuid4()), str(uuid.uuid4())
    fields = {
        "agent_id": agent,
        "job_id": job,
        "job_type": "Inventory",
        "job_type_id": str(uuid.uuid4()),
        "job_result": 4,
        "current_retry_count": 1,
    }
    with engine.begin() as connection:
        connection.execute(
            completions.insert(), completion_row(str(uuid.uuid4()), fields, NOW - 5, computed=True)
        )
        connection.exec_driver_sql(
            "INSERT INTO job_streaks (job_id, consecutive_failures, last_received_at, "
            f"started_at) VALUES ('{job}', 1, {NOW - 5}, {NOW - 5})"
        )
    return agent, job


def test_an_upgrade_older_running_nodes_cannot_work_with_is_refused_naming_them(
    engine: Engine,
) -> None:
    migrate_to(engine, "0006")
    agent, job = failing_streak(engine)
    node_beating(engine, NOW - 3)

    with pytest.raises(StoreError) as refused:
        upgrade(engine, clock=lambda: NOW)
    message = str(refused.value)
    assert "revision 0007" in message
    assert f"{OTHER_NODE} (heartbeat 3 s ago)" in message
    assert "Stop every serve, worker and poll process" in message
    assert current_revision(engine) == "0006", "nothing was migrated"

    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE nodes SET stopped_at = {NOW}")
    upgrade(engine, clock=lambda: NOW + 1)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        streaks = connection.exec_driver_sql("SELECT agent_id, job_id FROM job_streaks")
        assert [tuple(row) for row in streaks] == [(agent, job)], "the streak was kept"


def test_a_node_silent_for_longer_than_a_gone_one_does_not_hold_the_upgrade(
    engine: Engine,
) -> None:
    migrate_to(engine, "0006")
    node_beating(engine, NOW - STALE_AFTER - 1)  # killed on its machine, never said so
    upgrade(engine, clock=lambda: NOW)
    assert current_revision(engine) == head_revision()


def test_additive_migrations_run_while_nodes_run(engine: Engine) -> None:
    """The README's rolling upgrade: db upgrade, then restart the nodes one by one."""
    migrate_to(engine, "0007")
    node_beating(engine, NOW - 1)
    upgrade(engine, clock=lambda: NOW)
    assert current_revision(engine) == head_revision()


def test_db_upgrade_under_an_older_node_exits_saying_why_in_one_line(tmp_path: Path) -> None:
    database = tmp_path / "jobhooks.db"
    engine = connect(f"sqlite:///{database}")
    try:
        migrate_to(engine, "0006")
        # Beating now, as far as the command can tell (it reads the real clock).
        node_beating(engine, time.time() + 3600)
    finally:
        engine.dispose()
    config = tmp_path / "jobhooks.toml"
    config.write_text(f'[server]\ndatabase = "sqlite:///{database}"\n', encoding="utf-8")

    upgraded = subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgraded.returncode != 0, upgraded.stdout
    assert "Traceback" not in upgraded.stderr, upgraded.stderr
    assert "revision 0007 is not additive" in upgraded.stderr, upgraded.stderr
    assert OTHER_NODE in upgraded.stderr, upgraded.stderr
    engine = connect(f"sqlite:///{database}", create=False)
    try:
        assert current_revision(engine) == "0006"
    finally:
        engine.dispose()
