"""Reloading the configuration of a running server: SIGHUP and POST /api/v1/admin/reload."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
from support import cli
from support.handlers import read_lines
from support.reports import AGENT_A, report
from support.server import ServerProcess, StartServer, wait_for, write_config


def _appender(name: str, directory: Path) -> str:
    return f"""
[[handlers]]
name = "{name}"
type = "support.handlers:Appender"
job_types = "*"
properties = {{ path = "{directory / name}.log" }}
"""


BROKEN = """
[[handlers]]
name = "missing-type"
type = "support.handlers:DoesNotExist"
job_types = "*"

[[handlers]]
name = "bad-policy"
type = "support.handlers:Appender"
job_types = "*"
timeout = "soon"

[[handlers]]
name = "runs-for-nothing"
type = "support.handlers:Appender"
job_types = []
properties = { path = "nothing.log" }
"""


def _last_reload(admin: httpx.Client) -> dict[str, Any]:
    status: dict[str, Any] = admin.get("/api/v1/handlers").json()["last_reload"]
    return status


def _sighup(server: ServerProcess, admin: httpx.Client) -> dict[str, Any]:
    """Send SIGHUP and wait until the server has tried the reload; returns its status."""
    before = _last_reload(admin)["at"]
    server.signal(signal.SIGHUP)
    return wait_for(
        lambda: (status := _last_reload(admin))["at"] != before and status,
        10,
        "the server to handle SIGHUP",
    )


def _handled_by(agent: httpx.Client, admin: httpx.Client, directory: Path) -> list[str]:
    """Post a completion; return the handlers that ran for it (their trace has its id)."""
    answer = agent.post("/api/v1/job-completions", json=report())
    assert answer.status_code == 202, answer.text
    completion_id = answer.json()["id"]

    def finished() -> list[dict[str, Any]] | None:
        runs: list[dict[str, Any]] = admin.get(f"/api/v1/job-completions/{completion_id}").json()[
            "handler_runs"
        ]
        ran = [run for run in runs if run["status"] != "held"]
        return ran if all(run["status"] == "succeeded" for run in ran) else None

    runs = wait_for(finished, 10, "the completion's runs")
    names = sorted(run["handler"] for run in runs)
    for name in names:
        assert completion_id in {line.split()[0] for line in read_lines(directory / f"{name}.log")}
    return names


def test_a_file_that_cannot_be_used_is_refused_and_registration_problems_are_not(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(tmp_path, _appender("first", tmp_path))
    admin_token = cli.token(config, "--admin")
    agent_token = cli.token(config, "--agent", str(AGENT_A))
    server = start_server(config)

    with server.client(admin_token) as admin, server.client(agent_token) as agent:
        assert _handled_by(agent, admin, tmp_path) == ["first"]
        good_text = config.read_text(encoding="utf-8")

        config.write_text('[server]\nlisten = "nowhere"\n' + BROKEN, encoding="utf-8")
        status = _sighup(server, admin)
        assert status["applied"] is False
        assert [p for p in status["problems"] if "[server] listen" in p], status["problems"]
        refused = admin.post("/api/v1/admin/reload")
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert [h["name"] for h in admin.get("/api/v1/handlers").json()["items"]] == ["first"]
        assert _handled_by(agent, admin, tmp_path) == ["first"]

        # A file saved in another encoding than UTF-8: refused too, and said why.
        config.write_bytes(good_text.replace("first", "caf\xe9").encode("latin-1"))
        status = _sighup(server, admin)
        assert status["applied"] is False
        assert [p for p in status["problems"] if "not UTF-8" in p], status["problems"]
        assert _handled_by(agent, admin, tmp_path) == ["first"]

        # Problems in registrations only: applied. "first" keeps its last good version,
        # the new broken ones are quarantined.
        broken_first = _appender("first", tmp_path).replace(
            'job_types = "*"', 'job_types = "*"\nmax_attempts = "many"'
        )
        config.write_text(
            good_text.split("[[handlers]]")[0] + broken_first + BROKEN, encoding="utf-8"
        )
        status = _sighup(server, admin)
        assert status["applied"] is True
        problems = status["problems"]
        assert any("'first'" in p and "max_attempts" in p for p in problems), problems
        assert any("missing-type" in p and "DoesNotExist" in p for p in problems), problems
        assert any("bad-policy" in p and "timeout" in p for p in problems), problems
        assert any("runs-for-nothing" in p and "job_types" in p for p in problems), problems
        states = {r["name"]: r["state"] for r in admin.get("/readyz").json()["registrations"]}
        assert states == {
            "first": "kept",
            "missing-type": "quarantined",
            "bad-policy": "quarantined",
            "runs-for-nothing": "quarantined",
        }
        assert server.process is not None and server.process.poll() is None
        assert [h["name"] for h in admin.get("/api/v1/handlers").json()["items"]] == ["first"]
        assert _handled_by(agent, admin, tmp_path) == ["first"]

        config.write_text(
            good_text.split("[[handlers]]")[0] + _appender("second", tmp_path), encoding="utf-8"
        )
        status = _sighup(server, admin)
        assert status == {**status, "applied": True, "problems": []}
        assert [h["name"] for h in admin.get("/api/v1/handlers").json()["items"]] == ["second"]
        assert _handled_by(agent, admin, tmp_path) == ["second"]

        applied = admin.post("/api/v1/admin/reload")
        assert applied.status_code == 200
        assert applied.json()["applied"] is True
