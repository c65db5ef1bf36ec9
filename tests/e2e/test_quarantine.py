"""A real ``jobhooks serve`` with a broken registration: it starts, says so, holds that
registration's runs until a SIGHUP fixes it; ``--strict`` refuses; a disabled
registration (an imported, commented-out ``<register>``) is inert."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from support import cli
from support.handlers import read_lines
from support.reports import AGENT_A, report
from support.server import StartServer, run_cli, wait_for, write_config

GOOD = """
[[handlers]]
name = "record"
type = "support.handlers:Appender"
job_types = "*"
properties = {{ path = "{directory}/record.log" }}
"""
TYPO = """
[[handlers]]
name = "later"
type = "support.handlers:Apender"
job_types = "*"
properties = {{ path = "{directory}/later.log" }}
"""
UNSET = """
[[handlers]]
name = "hook"
type = "webhook"
job_types = "*"
properties = { url = "env:JOBHOOKS_TEST_UNSET_HOOK_URL" }
"""


def test_serve_starts_beside_a_broken_registration_and_runs_its_held_runs_once_fixed(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(tmp_path, (GOOD + TYPO).format(directory=tmp_path) + UNSET)
    admin_token = cli.token(config, "--admin")
    agent_token = cli.token(config, "--agent", str(AGENT_A))
    server = start_server(config)
    log = server.log()
    assert "1 handler, 2 quarantined" in log
    assert "registration 'later' quarantined (its completions are held" in log
    assert "module 'support.handlers' has no attribute 'Apender'" in log
    assert "environment variable JOBHOOKS_TEST_UNSET_HOOK_URL is not set" in log

    with server.client(admin_token) as admin, server.client(agent_token) as agent:
        ready = admin.get("/readyz")
        assert ready.status_code == 200
        assert [(r["name"], r["state"]) for r in ready.json()["registrations"]] == [
            ("later", "quarantined"),
            ("hook", "quarantined"),
        ]
        answer = agent.post("/api/v1/job-completions", json=report())
        assert answer.status_code == 202, answer.text
        assert [(r["handler"], r["status"]) for r in answer.json()["handler_runs"]] == [
            ("record", "pending"),
            ("later", "held"),
            ("hook", "held"),
        ]
        completion_id = answer.json()["id"]

        def status_of(handler: str) -> str:
            detail = admin.get(f"/api/v1/job-completions/{completion_id}").json()
            runs: list[dict[str, Any]] = detail["handler_runs"]
            return next(run["status"] for run in runs if run["handler"] == handler)

        wait_for(lambda: status_of("record") == "succeeded", 10, "the valid registration's run")
        assert status_of("later") == "held"

        config.write_text(
            config.read_text(encoding="utf-8").replace("Apender", "Appender"), encoding="utf-8"
        )
        server.signal(signal.SIGHUP)
        wait_for(lambda: status_of("later") == "succeeded", 10, "the held run, once fixed")
        lines = read_lines(tmp_path / "later.log")
        assert [line.split()[0] for line in lines] == [completion_id]
        assert status_of("hook") == "held"
        registrations = admin.get("/readyz").json()["registrations"]
        assert [r["name"] for r in registrations] == ["hook"]


def test_strict_refuses_to_start_naming_every_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path, (GOOD + TYPO).format(directory=tmp_path) + UNSET)
    result = run_cli("serve", "--strict", "--config", str(config), "--listen", "127.0.0.1:9")
    assert result.returncode == 1
    assert f"refusing to start: {config} is invalid" in result.stderr
    assert "module 'support.handlers' has no attribute 'Apender'" in result.stderr
    assert "JOBHOOKS_TEST_UNSET_HOOK_URL is not set" in result.stderr


def test_a_web_config_imported_with_its_commented_registrations_starts(
    tmp_path: Path, start_server: StartServer
) -> None:
    # The platform ships its built-in handler commented out, with empty job types.
    web_config = tmp_path / "web.config"
    web_config.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<!--'
        '<register type="IOrchestratorJobCompleteHandler" mapTo="CSS.CMS.Agents.Server.Handlers.'
        'SendEmailOrchestratorJobCompleteHandler, CSS.CMS.Agents.Server" '
        'name="SendEmailOrchestratorJobCompleteHandler">'
        '<property name="EmailRecipients" value="" /><property name="JobTypes" value="" />'
        "</register>-->\n",
        encoding="utf-8",
    )
    imported = run_cli("import-webconfig", str(web_config), "--include-commented")
    assert imported.returncode == 0, imported.stderr
    assert "enabled = false" in imported.stdout
    config = write_config(tmp_path, GOOD.format(directory=tmp_path), extra=imported.stdout)
    server = start_server(config)
    assert "quarantined" not in server.log()
    with server.client() as client:
        assert client.get("/readyz").json()["registrations"] == []
