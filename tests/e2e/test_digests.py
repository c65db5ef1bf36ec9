"""A digest lives in the database: a node killed while a digest collects loses none of what
it acknowledged into it, and the restarted node delivers the digest once, with every
completion, then opens the next one."""

from __future__ import annotations

from pathlib import Path

from support import cli
from support.handlers import read_lines
from support.reports import AGENT_A, report
from support.server import ServerProcess, StartServer, wait_for, write_config

PATH = "/api/v1/job-completions"


def _fail(server: ServerProcess, token: str, machine: str = "orch21") -> dict[str, object]:
    with server.client(token) as client:
        response = client.post(PATH, json=report(client_machine=machine))
    assert response.status_code == 202, response.text
    [run] = response.json()["handler_runs"]
    assert run["status"] == "collecting"
    return {"completion": response.json()["id"], **run}


def test_a_digest_survives_a_killed_node_and_is_delivered_once(
    tmp_path: Path, start_server: StartServer
) -> None:
    trace = tmp_path / "digests.log"
    config = write_config(
        tmp_path,
        f"""
        [[handlers]]
        name = "digest"
        type = "support.handlers:GroupAppender"
        job_types = "*"
        group_by = ["client_machine"]
        group_wait = "8s"
        properties = {{ path = "{trace}" }}
        """,
    )
    token = cli.token(config, "--agent", str(AGENT_A))
    first = start_server(config)
    before = [_fail(first, token) for _ in range(5)]
    first.kill()
    assert read_lines(trace) == [], "killed before the digest closed"

    again = start_server(config)
    after = [_fail(again, token) for _ in range(2)]
    assert {run["id"] for run in before + after} == {before[0]["id"]}, "still the same digest"
    [line] = wait_for(lambda: read_lines(trace), 20, "the digest to be delivered")
    attempt, members = line.split()
    assert attempt == "1"
    assert members.split(",") == [str(run["completion"]) for run in before + after]

    later = _fail(again, token)
    assert later["id"] != before[0]["id"], "the next failure opens the next digest"
    assert len(wait_for(lambda: read_lines(trace)[1:], 20, "the next digest")) == 1
    assert read_lines(trace)[0] == line, "the first digest was delivered once"


def test_simulate_burst_makes_one_digest_per_failing_machine(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(
        tmp_path,
        """
        [[handlers]]
        name = "machine-down"
        type = "log"
        job_types = "*"
        when = "failure"
        group_by = ["client_machine"]
        group_wait = "1h"
        """,
    )
    admin = cli.token(config, "--admin")
    server = start_server(config)
    result = cli.jobhooks(
        "simulate", "--url", server.url, "--token", admin,
        "--count", "10", "--agents", "2", "--failure", "0", "--warning", "0", "--burst", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "90 of 90 reports accepted" in result.stdout
    with server.client(admin) as client:
        runs = client.get("/api/v1/handler-runs", params={"handler": "machine-down"}).json()
    assert sorted(run["group_size"] for run in runs["items"]) == [40, 40]
    assert {run["status"] for run in runs["items"]} == {"collecting"}
