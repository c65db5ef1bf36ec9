"""A job's streak lives in the database: a node killed and restarted mid-streak fires the
rule at the right failure, once."""

from __future__ import annotations

import uuid
from pathlib import Path

from support import cli
from support.reports import AGENT_A, report
from support.server import ServerProcess, StartServer, write_config

PATH = "/api/v1/job-completions"
PAGE = """
[[handlers]]
name = "page"
type = "log"
job_types = "*"
when = ["failure-streak", "recovered"]
streak = 3
"""


def _fail(server: ServerProcess, token: str, job: uuid.UUID) -> list[dict[str, object]]:
    with server.client(token) as client:
        response = client.post(PATH, json=report(job_id=job, current_retry_count=None))
    assert response.status_code == 202, response.text
    runs: list[dict[str, object]] = response.json()["handler_runs"]
    return runs


def test_a_streak_survives_a_killed_node_and_fires_once(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(tmp_path, PAGE)
    token = cli.token(config, "--agent", str(AGENT_A))
    job = uuid.uuid4()
    first = start_server(config)
    assert _fail(first, token, job) == [] and _fail(first, token, job) == []
    first.kill()

    again = start_server(config)
    [run] = _fail(again, token, job)
    later = _fail(again, token, job)

    trigger = run["trigger"]
    assert isinstance(trigger, dict)
    assert (trigger["kind"], trigger["streak"]) == ("failure-streak", 3)
    assert later == [], "once per streak"
