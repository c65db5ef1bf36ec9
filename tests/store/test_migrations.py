"""The migrations build exactly the schema that ``tables.metadata`` describes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from jobhooks.errors import SchemaOutOfDate, StoreError
from jobhooks.store.checkins import completion_row
from jobhooks.store.engine import connect
from jobhooks.store.migrate import current_revision, ensure_current, head_revision, upgrade
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
    import subprocess
    import sys

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
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    agent, older_agent, job = (str(uuid.uuid4()) for _ in range(3))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
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
