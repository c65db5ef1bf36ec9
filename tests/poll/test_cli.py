"""``jobhooks poll --once [--dry-run]``, ``job-types sync`` and ``validate`` with the catalog."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import cli
from support.keyfactor import MANAGEMENT_ID, RawRequest, past
from support.server import free_port

import jobhooks.cli.config_commands
import jobhooks.cli.poll_commands  # noqa: F401

from .conftest import Platform, history_ids

FAILURE = 4


def poll(config: Any, *options: str) -> Any:
    return cli.jobhooks("poll", "--once", "--config", str(config), *options)


def test_dry_run_prints_what_it_would_create_and_stores_nothing(platform: Platform) -> None:
    fake = platform.fake
    fake.add(at=past(7200))
    failed = fake.add(result=FAILURE, job_type="WinCertManagement", at=past(60))
    running = fake.start_run(at=past(30))
    config = platform.write_config(poll=f'start = "{past(600).isoformat()}"')
    database = platform.directory / "data" / "jobhooks.db"
    assert not database.exists()

    dry = poll(config, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not database.exists(), "a dry run creates no database"
    assert "no database yet: deciding as the first poll would" in dry.stderr
    line = next(line for line in dry.stdout.splitlines() if str(failed) in line)
    assert "WinCertManagement" in line and "Failure" in line and "record" in line
    assert str(running) not in dry.stdout
    assert "would create 1 completions" in dry.stdout
    assert "Nothing was stored (dry run)" in dry.stdout

    stored = poll(config)
    assert stored.exit_code == 0, stored.output
    assert "created 1 completions (1 handler runs)" in stored.stdout
    assert "1 newly seen running" in stored.stdout
    assert history_ids(platform.completions()) == [failed]
    again = poll(config)
    assert "created 0 completions" in again.stdout


def test_a_refused_password_exits_1_naming_the_credential(platform: Platform) -> None:
    platform.fake.password = "another password"
    result = poll(platform.write_config())
    assert result.exit_code == 1
    assert "401 Unauthorized" in result.stderr
    assert "user 'DOMAIN\\svc-jobhooks' ([platform] username and password)" in result.stderr
    assert "kf-pw" not in result.output


def test_an_unreachable_platform_exits_1_saying_why(platform: Platform) -> None:
    config = platform.write_config()
    unreachable = f"http://127.0.0.1:{free_port()}/api"
    config.write_text(config.read_text().replace(platform.server.url, unreachable))
    result = poll(config)
    assert result.exit_code == 1
    assert "could not be read" in result.stderr
    assert f"cannot reach the platform at {unreachable}/" in result.stderr


def test_poll_once_refuses_while_another_node_polls(platform: Platform) -> None:
    import asyncio

    config = platform.write_config(poll="lease = 1")

    async def hold() -> Any:
        async with platform.poller(config, node="busy-node") as poller:
            polling = asyncio.create_task(poller.run())  # renews its lease
            try:
                return await asyncio.to_thread(poll, config)
            finally:
                await poller.stop()
                await polling

    result = asyncio.run(hold())
    assert result.exit_code == 1
    assert "busy-node" in result.stderr and "holds the poller's lease" in result.stderr
    assert "waiting to see whether it renews it" in result.stderr


def test_job_types_sync_then_validate_resolves_names_and_lists_near_matches(
    platform: Platform,
) -> None:
    handlers = """
    [[handlers]]
    name = "management"
    type = "log"
    job_types = ["{name}"]
    """
    config = platform.write_config(handlers=handlers.replace("{name}", "WinCertManagment"))
    before = cli.jobhooks("validate", "--config", str(config))
    assert before.exit_code == 1
    assert "unknown job type name 'WinCertManagment'" in before.stderr

    synced = cli.jobhooks("job-types", "sync", "--config", str(config))
    assert synced.exit_code == 0, synced.output
    line = next(line for line in synced.stdout.splitlines() if "WinCertManagement" in line)
    assert str(MANAGEMENT_ID) in line and "store type WinCert" in line
    assert "RebootServer" in synced.stdout and "custom job type" in synced.stdout
    assert "Synced 4 job types" in synced.stdout

    typo = cli.jobhooks("validate", "--config", str(config))
    assert typo.exit_code == 1
    assert "did you mean 'WinCertManagement'? other near matches:" in typo.stderr

    config.write_text(config.read_text().replace("WinCertManagment", "WinCertManagement"))
    valid = cli.jobhooks("validate", "--config", str(config))
    assert valid.exit_code == 0, valid.output
    assert f"WinCertManagement ({MANAGEMENT_ID})" in valid.stdout


def test_job_types_sync_says_when_the_platform_cannot_be_read(platform: Platform) -> None:
    platform.fake.password = "rotated"
    result = cli.jobhooks("job-types", "sync", "--config", str(platform.write_config()))
    assert result.exit_code == 1
    assert "catalog could not be read" in result.stderr and "401" in result.stderr


@pytest.mark.parametrize("option", ["--dry-run"])
def test_dry_run_needs_once(platform: Platform, option: str) -> None:
    result = cli.jobhooks("poll", option, "--config", str(platform.write_config()))
    assert result.exit_code == 1
    assert "--dry-run goes with --once" in result.stderr


ACK = """
[[handlers]]
name = "ack"
type = "acknowledge"
job_types = "*"
"""


def test_acknowledge_sends_the_runs_job_history_id(platform: Platform) -> None:
    config = platform.write_config(handlers=ACK)
    context = platform.directory / "context.json"
    context.write_text(json.dumps({"job_history_id": 2170, "job_result": "Warning"}))
    sent = cli.jobhooks(
        "test-handler", "ack", "--config", str(config), "--context-json", str(context)
    )
    assert sent.exit_code == 0, sent.output
    assert platform.fake.acknowledged == [2170]
    (request,) = [s for s in platform.fake.served if s.path.endswith("/Acknowledge")]
    assert json.loads(request.body) == {"JobAuditIds": [2170]}
    assert request.headers["x-keyfactor-requested-with"] == "APIClient"

    success = cli.jobhooks("test-handler", "ack", "--config", str(config), "--result", "success")
    assert success.exit_code == 0, "a success is left alone"
    unknown = cli.jobhooks("test-handler", "ack", "--config", str(config))
    assert unknown.exit_code == 1
    assert "no job_history_id" in unknown.stdout
    assert platform.fake.acknowledged == [2170]


SECRET_Q = "sig=Zk29-never-print-me&pq.pageReturned=1"


def test_a_redirect_exits_1_naming_where_it_points_and_what_to_set(platform: Platform) -> None:
    def redirect(request: RawRequest) -> bool:
        if not request.path.endswith("/JobHistory"):
            return False
        target = f"https://kf-new.example.com/KeyfactorAPI/OrchestratorJobs/JobHistory?{SECRET_Q}"
        request.send(302, b"", {"location": target})
        return True

    platform.fake.raw_answers.append(redirect)
    result = poll(platform.write_config())
    assert result.exit_code == 1
    error = " ".join(result.stderr.split())
    assert "answered 302 Found to GET OrchestratorJobs/JobHistory" in error
    assert (
        "pointing to https://kf-new.example.com/KeyfactorAPI/OrchestratorJobs/JobHistory;" in error
    )
    assert "redirects are not followed: set [platform] url to the final address" in error
    assert "sig=" not in result.output


def test_a_url_carrying_credentials_is_refused_without_printing_them(platform: Platform) -> None:
    """httpx would authenticate with 'user:password@' in [platform] url, and every log
    line naming the platform (the first poll's, each error's) would print the password."""
    config = platform.write_config()
    secret = platform.fake.password
    with_credentials = platform.server.url.replace("://", f"://DOMAIN%5Csvc-jobhooks:{secret}@")
    text = config.read_text().replace(
        f'url = "{platform.server.url}"', f'url = "{with_credentials}"'
    )
    config.write_text(text.replace("username =", "# username =").replace("password =", "# p ="))
    assert with_credentials in config.read_text()

    result = poll(config, "--log-level", "info")
    assert result.exit_code == 1, result.output
    assert "[platform] url" in result.stderr and "carries credentials" in result.stderr
    assert "username and password" in result.stderr
    assert secret not in result.output
    assert platform.fake.history_requests() == []
