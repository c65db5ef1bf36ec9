"""The database going wrong under a real server: deleted, full, read-only, or unreachable.

Nothing is acknowledged that is not kept: a check-in the node cannot store is
answered 503 in plain words, ``/readyz`` fails so a load balancer takes the node
out, and the log says what happened once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import cli
from support.filesystems import filesystem
from support.reports import AGENT_A, report
from support.server import StartServer, child_env, wait_for, write_config

HANDLER = """
[[handlers]]
name = "log"
type = "log"
job_types = "*"
"""


def _post_many(client: httpx.Client, count: int, **fields: object) -> list[int]:
    return [
        client.post("/api/v1/job-completions", json=report(**fields)).status_code
        for _ in range(count)
    ]


def test_a_database_deleted_under_a_running_server_is_noticed_before_acknowledging(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(tmp_path, HANDLER)
    agent = cli.token(config, "--agent", str(AGENT_A))
    admin = cli.token(config, "--admin")
    server = start_server(config)
    database = tmp_path / "data" / "jobhooks.db"
    with server.client(agent) as client, server.client(admin) as operator:
        assert _post_many(client, 20) == [202] * 20
        assert operator.get("/api/v1/handlers").status_code == 200  # the token is cached
        for path in tmp_path.joinpath("data").glob("jobhooks.db*"):
            path.unlink()

        after = _post_many(client, 50)
        ready = client.get("/readyz")
        answer = client.post("/api/v1/job-completions", json=report())
        reads = {
            path: operator.get(path)
            for path in ("/api/v1/job-completions", "/api/v1/handler-runs", "/api/v1/handlers")
        }
        pages = [operator.get("/ui/login"), operator.get("/ui/")]

    assert 202 not in after, f"{after.count(202)} check-ins acknowledged into a deleted file"
    assert set(after) == {503}
    assert ready.status_code == 503
    assert "was deleted" in ready.json()["database"]
    assert "restart jobhooks" in answer.json()["detail"]
    for path, read in reads.items():
        assert read.status_code == 503, (path, read.text)
        assert read.headers["content-type"] == "application/problem+json"
    for page in pages:
        assert page.status_code == 503, page.text
        assert "text/html" in page.headers["content-type"]
        assert "The database cannot be used right now" in page.text
    assert "Traceback" not in server.log() and "Exception in ASGI" not in server.log()
    errors = [line for line in server.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1, f"logged once at ERROR: {errors}"
    assert str(database) in errors[0]

    server.stop()
    restarted = start_server(config)
    assert f"created a new database at {database}" in restarted.log()


def test_a_full_disk_answers_503_in_plain_words_and_takes_the_node_out(
    tmp_path: Path, start_server: StartServer
) -> None:
    with filesystem(tmp_path / "data", "8m") as data:
        config = write_config(tmp_path, HANDLER)
        agent = cli.token(config, "--agent", str(AGENT_A))
        server = start_server(config)
        filler = data / "filler"
        with filler.open("wb") as out:
            # Fill the disk but for a few hundred KB: the next check-ins run out of room.
            free = shutil.disk_usage(data).free
            out.write(b"\0" * max(0, free - 400 * 1024))
        big = "x" * 30_000
        with server.client(agent) as client:
            statuses: list[int] = []
            for _ in range(200):
                response = client.post("/api/v1/job-completions", json=report(message=big))
                statuses.append(response.status_code)
                if response.status_code != 202:
                    break
            refused = response
            ready = client.get("/readyz")

            assert refused.status_code == 503, statuses
            detail = refused.json()["detail"]
            assert "the disk holding the database is full" in detail
            # SQLite writes nothing of a transaction it has no room for, at its COMMIT too.
            assert detail.startswith("the completion was not stored"), detail
            assert "may have been" not in detail
            for internal in ("sqlite3", "OperationalError", "INSERT", "[SQL"):
                assert internal not in detail
            assert ready.status_code == 503
            assert "full" in ready.json()["database"]

            filler.unlink()
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz to recover")
            assert client.post("/api/v1/job-completions", json=report()).status_code == 202
        server.stop()


def test_a_read_only_data_directory_at_start_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    with filesystem(tmp_path / "data", "1m", read_only=True) as data:
        config = write_config(tmp_path, HANDLER)
        result = subprocess.run(
            [sys.executable, "-m", "jobhooks.cli", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=tmp_path,
            timeout=60,
        )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(data) in line
    assert "read-only" in line, line


@pytest.mark.parametrize("room", [0, 48 * 1024], ids=["no room", "room for a page"])
def test_a_start_on_a_full_disk_leaves_no_empty_database_and_the_next_start_creates_it(
    tmp_path: Path, start_server: StartServer, room: int
) -> None:
    """With room for a page or two, the first page of the file is written before the
    migration runs out of room: that file holds nothing either."""
    with filesystem(tmp_path / "data", "1m") as data:
        filler = data / "filler"
        with filler.open("wb") as out:
            out.write(b"\0" * (shutil.disk_usage(data).free - room))
        config = write_config(tmp_path, HANDLER)
        result = subprocess.run(
            [sys.executable, "-m", "jobhooks.cli", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode != 0
        [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert "the disk holding the database is full" in line, line
        assert "writable" not in line, "a full disk is not a permission problem"
        assert not (data / "jobhooks.db").exists(), "no empty database left behind"

        filler.unlink()
        server = start_server(config)
        assert f"created a new database at {data / 'jobhooks.db'}" in server.log()
        server.stop()


def test_a_postgresql_url_without_its_driver_names_the_extra_to_install(tmp_path: Path) -> None:
    missing = tmp_path / "no-psycopg"
    missing.mkdir()
    (missing / "psycopg.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    config = write_config(
        tmp_path, HANDLER, server='database = "postgresql://jobhooks@127.0.0.1:5432/test"\n'
    )
    config.write_text(config.read_text().replace('database = "sqlite:///data/jobhooks.db"\n', ""))
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(missing), env["PYTHONPATH"]])
    result = subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "pip install 'jobhooks[postgres]'" in result.stderr
