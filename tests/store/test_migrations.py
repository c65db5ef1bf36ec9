"""The migrations build exactly the schema that ``tables.metadata`` describes, and an
upgrade that running older nodes cannot work with waits until they stop.

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
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from pg import pg_empty_database  # noqa: F401  (fixture)
from sqlalchemy import Engine, inspect

from jobhooks.errors import SchemaOutOfDate, StoreError
from jobhooks.store.checkins import completion_row
from jobhooks.store.clock import DatabaseClock
from jobhooks.store.engine import connect
from jobhooks.store.migrate import current_revision, ensure_current, head_revision, upgrade
from jobhooks.store.nodes import STALE_AFTER
from jobhooks.store.tables import completions, metadata


def test_upgrade_builds_the_schema_of_the_tables_module(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_comparison_would_see_a_missing_index(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'drifted.db'}")
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP INDEX ix_runs_due")
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert [d[0] for d in differences] == ["add_index"]
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_ensure_current_accepts_the_result(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'twice.db'}")
    try:
        upgrade(engine)
        upgrade(engine)
        ensure_current(engine)
    finally:
        engine.dispose()


def test_an_empty_database_is_behind_and_says_how_to_upgrade(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(SchemaOutOfDate, match=r"not created yet.*jobhooks db upgrade"):
            ensure_current(engine)
    finally:
        engine.dispose()


def test_the_migrations_downgrade_to_nothing_and_back(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    try:
        upgrade(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
    finally:
        engine.dispose()


def test_processes_starting_together_on_a_new_database_all_start(tmp_path: Path) -> None:
    config = tmp_path / "jobhooks.toml"
    config.write_text(f'[server]\ndatabase = "sqlite:///{tmp_path / "new.db"}"\n', encoding="utf-8")
    command = [sys.executable, "-m", "jobhooks.cli", "token", "create", "--admin"]
    processes = [
        subprocess.Popen(
            [*command, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], outputs
    assert len({out.strip() for out, _err in outputs}) == 4


def test_streaks_stored_before_they_were_per_agent_keep_the_agent_of_their_job(
    tmp_path: Path,
) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'streaks.db'}")
    agent, older_agent, job = (str(uuid.uuid4()) for _ in range(3))
    try:
        migrate_to(engine, "0006")
        with engine.begin() as connection:
            for received, who in ((1.0, older_agent), (2.0, agent)):
                connection.execute(
                    completions.insert(),
                    completion_row(
                        str(uuid.uuid4()), report_fields(who, job), received, computed=True
                    ),
                )
            connection.exec_driver_sql(
                "INSERT INTO job_streaks (job_id, consecutive_failures, last_received_at, "
                f"started_at) VALUES ('{job}', 2, 2.0, 1.0)"
            )
            connection.exec_driver_sql(
                f"INSERT INTO rule_state (handler, job_id, fired_at) VALUES ('page', '{job}', 2.0)"
            )
            # A streak whose completions retention removed: no agent can be told.
            connection.exec_driver_sql(
                "INSERT INTO job_streaks (job_id, consecutive_failures, last_received_at, "
                f"started_at) VALUES ('{uuid.uuid4()}', 5, 2.0, 1.0)"
            )
        upgrade(engine)
        with engine.connect() as connection:
            streaks = connection.exec_driver_sql("SELECT agent_id, job_id FROM job_streaks")
            fired = connection.exec_driver_sql("SELECT agent_id, job_id FROM rule_state")
            assert [tuple(row) for row in streaks] == [(agent, job)]
            assert [tuple(row) for row in fired] == [(agent, job)]
    finally:
        engine.dispose()


def report_fields(agent: str, job: str) -> dict[str, object]:
    return {
        "agent_id": agent,
        "job_id": job,
        "job_type": "Inventory",
        "job_type_id": str(uuid.uuid4()),
        "job_result": 4,
        "current_retry_count": 1,
    }


def test_a_schema_a_newer_jobhooks_made_is_refused_saying_so(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'newer.db'}")
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0042'")
        for step in (upgrade, ensure_current):
            with pytest.raises(StoreError, match="a newer jobhooks migrated it") as refused:
                step(engine)
            assert not isinstance(refused.value, SchemaOutOfDate)
        assert current_revision(engine) == "0042", "left as it was"
    finally:
        engine.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    """Migrate as the jobhooks of ``revision`` did."""
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


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
    with engine.begin() as connection:
        connection.execute(
            completions.insert(),
            completion_row(str(uuid.uuid4()), report_fields(agent, job), NOW - 5, computed=True),
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


def test_without_a_clock_the_upgrade_reads_heartbeats_in_the_databases_time(
    engine: Engine,
) -> None:
    """Heartbeats are written in the database server's time on PostgreSQL: a machine
    running 'db upgrade' with its clock off must not take a node beating now for gone."""
    migrate_to(engine, "0006")
    with engine.connect() as connection:
        clock = DatabaseClock()
        clock.measure(connection)
    node_beating(engine, clock())

    with pytest.raises(StoreError, match="revision 0007 is not additive"):
        upgrade(engine)
    assert current_revision(engine) == "0006"
