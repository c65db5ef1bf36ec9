"""A backup taken while jobhooks serves, restored after a loss, as the README's production
install describes it: every check-in acknowledged before the backup is back, with its runs
and the tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.filesystems import filesystem
from support.reports import report
from support.server import StartServer, create_tokens, run_cli, write_config

HANDLERS = """
[[handlers]]
name = "audit"
type = "log"
job_types = "*"
"""


def test_a_backup_taken_while_serving_restores_what_was_acknowledged(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(tmp_path, HANDLERS)
    database = tmp_path / "data" / "jobhooks.db"
    admin, agent = create_tokens(config, "--admin", str(report()["agent_id"]))
    server = start_server(config)
    with server.client(agent) as client:
        before = [client.post("/api/v1/job-completions", json=report()).json() for _ in range(5)]
        backup = tmp_path / "backups" / "jobhooks-1.db"
        backup.parent.mkdir()
        taken = run_cli("db", "backup", str(backup), "--config", str(config))
        assert taken.returncode == 0, taken.stderr
        assert taken.stdout.startswith(f"Backed up {database} to {backup} (")
        after = client.post("/api/v1/job-completions", json=report()).json()

        again = run_cli("db", "backup", str(backup), "--config", str(config))
        assert again.returncode == 1
        assert "exists; a backup never overwrites" in again.stderr
        refused = run_cli("db", "restore", str(backup), "--config", str(config))
        assert refused.returncode == 1
        assert f"jobhooks is running on {database}" in refused.stderr
        assert "stop every serve, worker and poll process" in refused.stderr
    server.stop()

    database.write_bytes(b"lost")  # the disk lets us down
    for side in ("-wal", "-shm"):
        database.with_name(database.name + side).unlink(missing_ok=True)
    restored = run_cli("db", "restore", str(backup), "--config", str(config))
    assert restored.returncode == 0, restored.stderr
    assert f"Restored {database} from {backup}" in restored.stdout
    (kept,) = database.parent.glob("jobhooks.db.damaged-*")
    assert kept.read_bytes() == b"lost"
    assert f"it is kept as {kept}" in restored.stdout

    server = start_server(config)
    with server.client(admin) as client:
        for answer in before:
            detail = client.get(f"/api/v1/job-completions/{answer['id']}")
            assert detail.status_code == 200, detail.text
            assert [run["handler"] for run in detail.json()["handler_runs"]] == ["audit"]
        assert client.get(f"/api/v1/job-completions/{after['id']}").status_code == 404
    with server.client(agent) as client:
        assert client.post("/api/v1/job-completions", json=report()).status_code == 202


def test_a_damaged_backup_is_refused_and_the_database_kept(tmp_path: Path) -> None:
    config = write_config(tmp_path, HANDLERS)
    create_tokens(config, "--admin")
    database = tmp_path / "data" / "jobhooks.db"
    kept = database.read_bytes()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)

    refused = run_cli("db", "restore", str(damaged), "--config", str(config))

    assert refused.returncode == 1
    assert str(damaged) in refused.stderr
    assert database.read_bytes() == kept


def test_postgresql_is_backed_up_with_its_own_tools(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, HANDLERS, server='database = "postgresql://jobhooks@127.0.0.1:1/jobhooks"'
    )

    refused = run_cli("db", "backup", str(tmp_path / "copy.db"), "--config", str(config))

    assert refused.returncode == 1
    assert "back it up and restore it with PostgreSQL's own tools (pg_dump" in refused.stderr


def test_a_backup_that_fails_leaves_nothing_behind_and_says_why(tmp_path: Path) -> None:
    config = write_config(tmp_path, HANDLERS)
    create_tokens(config, "--admin")  # the database exists, with something in it
    nowhere = tmp_path / "no-such-folder" / "b.db"
    missing = run_cli("db", "backup", str(nowhere), "--config", str(config))
    assert missing.returncode == 1
    assert f"there is no folder {nowhere.parent}" in missing.stderr

    with filesystem(tmp_path / "small", "64k") as small:
        (small / "filler").write_bytes(b"\0" * shutil.disk_usage(small).free)
        full = run_cli("db", "backup", str(small / "b.db"), "--config", str(config))
        left = sorted(path.name for path in small.iterdir())
    assert full.returncode == 1
    assert "cannot back up" in full.stderr and "full" in full.stderr, full.stderr
    assert left == ["filler"], "no partial copy, nor its journal"
