"""The ``jobhooks`` verbs operators use against a running server, and the token verbs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from support import cli
from support.pipeline import Pipeline
from support.reports import AGENT_A, DOOMED, INVENTORY, report
from support.server import child_env, run_cli, wait_for

import jobhooks


def _operator(pipeline: Pipeline, *args: str) -> str:
    result = cli.jobhooks(*args, "--url", pipeline.server.url, "--token", pipeline.tokens["admin"])
    assert result.exit_code == 0, result.output
    return result.stdout


def _doomed_run(pipeline: Pipeline) -> tuple[str, str]:
    """A completion whose ``doomed`` run is dead: (completion id, run id)."""
    body = report(job_type="Doomed Job", job_type_id=DOOMED, message="cli test")
    answer = pipeline.check_in(body)
    pipeline.settled(answer["id"])
    run_id = next(r["id"] for r in answer["handler_runs"] if r["handler"] == "doomed")
    return answer["id"], run_id


@pytest.fixture(scope="module")
def dead_run(pipeline: Pipeline) -> tuple[str, str]:
    """One dead ``doomed`` run for the tests that only read: (completion id, run id)."""
    return _doomed_run(pipeline)


def test_runs_lists_what_was_stored(pipeline: Pipeline, dead_run: tuple[str, str]) -> None:
    _completion_id, run_id = dead_run

    out = _operator(pipeline, "runs", "--status", "dead", "--handler", "doomed")

    line = next(line for line in out.splitlines() if run_id in line)
    assert "doomed" in line
    assert "dead" in line
    assert "2/2" in line
    assert "RuntimeError: handler exploded on purpose" in line
    assert run_id not in _operator(pipeline, "runs", "--status", "succeeded")


def test_replay_runs_a_dead_run_again(pipeline: Pipeline) -> None:
    completion_id, run_id = _doomed_run(pipeline)

    out = _operator(pipeline, "replay", run_id)

    assert out.strip() == f"Run {run_id} is pending again (its status was dead)."

    def replayed() -> bool:
        run = next(r for r in pipeline.settled(completion_id)["handler_runs"] if r["id"] == run_id)
        return bool(run["total_attempts"] == 4)

    wait_for(replayed, 15, "the replayed run to use its attempts again")
    out = _operator(pipeline, "replay", "--handler", "doomed", "--dead")
    assert out.startswith("Replaying ") and "dead run(s) of doomed" in out


def test_completions_shows_a_completion_with_its_runs(
    pipeline: Pipeline, dead_run: tuple[str, str]
) -> None:
    completion_id, run_id = dead_run

    out = _operator(pipeline, "completions", completion_id)

    assert completion_id in out
    assert run_id in out
    assert "cli test" in out
    assert "Doomed Job" in out
    assert "record-all" in out and "doomed" in out
    job_id = pipeline.detail(completion_id)["job_id"]
    listed = _operator(pipeline, "completions", "--job", job_id)
    assert completion_id in listed


HOSTILE_MACHINE = "[/nope] [bold red]ADMIN[/]"
HOSTILE_TYPE = "Doomed \x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\ \x1b[2J\x9b2J"


def test_job_data_is_printed_as_text_never_obeyed(pipeline: Pipeline) -> None:
    """A report's fields are shown as they are: markup stays brackets, and the escape
    sequences a terminal would act on (clear the screen, a hidden link) are shown as
    escapes, in every listing that prints them."""
    body = report(job_type=HOSTILE_TYPE, job_type_id=DOOMED, client_machine=HOSTILE_MACHINE)
    answer = pipeline.check_in(body)
    pipeline.settled(answer["id"])

    outputs = [
        _operator(pipeline, "completions", "--limit", "500"),
        _operator(pipeline, "completions", answer["id"]),
        _operator(pipeline, "runs", "--limit", "500"),
        _operator(pipeline, "job-types"),
        _operator(pipeline, "completions", answer["id"], "--json"),
    ]

    for out in outputs:
        assert "\x1b" not in out and "\x9b" not in out, repr(out)
    listed, detail, _runs, _types, as_json = outputs
    assert json.loads(as_json)["job_type"] == HOSTILE_TYPE
    for out in (listed, detail):
        assert "[/nope] [bold red]ADMIN[/]" in out.replace("\n", "")
    assert "\\x1b[2J\\x9b2J" in detail


def test_job_types_lists_the_job_types_seen(pipeline: Pipeline, dead_run: tuple[str, str]) -> None:
    pipeline.check_in(report(job_type="Inventory", job_type_id=INVENTORY))

    out = _operator(pipeline, "job-types")

    doomed = next(line for line in out.splitlines() if str(DOOMED) in line)
    assert "Doomed Job" in doomed
    assert "seen" in doomed
    assert str(INVENTORY) in out


def test_operator_verbs_report_a_refused_token(pipeline: Pipeline) -> None:
    result = cli.jobhooks("runs", "--url", pipeline.server.url, "--token", "jh_nope_nope")

    assert result.exit_code == 1
    assert "401" in result.stderr


def test_token_create_prints_the_token_alone(pipeline: Pipeline) -> None:
    created = run_cli("token", "create", "--agent", str(AGENT_A), "--config", str(pipeline.config))

    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1
    token = created.stdout.strip()
    assert token.startswith("jh_")
    with pipeline.server.client(token) as agent:
        assert agent.post("/api/v1/job-completions", json=report()).status_code == 202


def test_token_list_never_prints_a_token(pipeline: Pipeline) -> None:
    result = cli.jobhooks("token", "list", "--config", str(pipeline.config))

    assert result.exit_code == 0, result.output
    for role, token in pipeline.tokens.items():
        token_id = token.split("_")[1]
        assert token not in result.output, role
        assert token.split("_", 2)[2] not in result.output, role
        assert token_id in result.output
    assert str(AGENT_A) in result.output
    assert "admin" in result.output and "viewer" in result.output


def test_a_revoked_token_is_refused(pipeline: Pipeline) -> None:
    agent = uuid.uuid4()
    token = cli.token(pipeline.config, "--agent", str(agent))
    token_id = token.split("_")[1]

    revoked = cli.jobhooks("token", "revoke", token_id, "--config", str(pipeline.config))
    again = cli.jobhooks("token", "revoke", token_id, "--config", str(pipeline.config))
    listed = cli.jobhooks("token", "list", "--config", str(pipeline.config))

    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.strip() == f"Revoked {token_id}."
    assert again.exit_code == 1
    assert "no active token" in again.stderr
    row = next(line for line in listed.stdout.splitlines() if token_id in line)
    assert row.count("-") >= 4, "the revoked column shows when"
    with pipeline.server.client(token) as client:
        response = client.post("/api/v1/job-completions", json=report(agent_id=agent))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


# scripting: ids whole at any width, dates, JSON, the version

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _at_width(pipeline: Pipeline, columns: int, *args: str) -> str:
    """``jobhooks ARGS`` in a fresh process on a terminal ``columns`` wide."""
    result = subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", *args],
        capture_output=True,
        text=True,
        env=child_env(
            COLUMNS=str(columns),
            JOBHOOKS_URL=pipeline.server.url,
            JOBHOOKS_TOKEN=pipeline.tokens["admin"],
        ),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    return result.stdout


@pytest.mark.parametrize("columns", [80, 120])
def test_a_run_id_copied_from_the_table_replays_at_any_width(
    pipeline: Pipeline, columns: int
) -> None:
    completion_id, run_id = _doomed_run(pipeline)

    listed = _at_width(pipeline, columns, "runs", "--status", "dead", "--handler", "doomed")
    copied = next(found for found in UUID.findall(listed) if found == run_id)
    shown = _at_width(pipeline, columns, "completions", "--limit", "50")

    assert completion_id in UUID.findall(shown)
    replayed = _at_width(pipeline, columns, "replay", copied)
    assert replayed.strip() == f"Run {run_id} is pending again (its status was dead)."


def test_times_are_dates_never_seconds_since_the_epoch(
    pipeline: Pipeline, dead_run: tuple[str, str]
) -> None:
    completion_id, _run_id = dead_run
    received = pipeline.detail(completion_id)["received_at"]
    date = datetime.fromtimestamp(received, UTC).strftime("%Y-%m-%d %H:%M:%S")

    for out in (
        _operator(pipeline, "completions", completion_id),
        _operator(pipeline, "completions"),
        _operator(pipeline, "runs"),
        _operator(pipeline, "job-types"),
    ):
        assert not re.search(r"\b1\d{9}(\.\d+)?\b", out), out
    assert f"{date} UTC" in _operator(pipeline, "completions", completion_id)


def test_listings_print_the_apis_objects_as_json(
    pipeline: Pipeline, dead_run: tuple[str, str]
) -> None:
    completion_id, run_id = dead_run

    runs = json.loads(_operator(pipeline, "runs", "--status", "dead", "--json"))
    completions = json.loads(_operator(pipeline, "completions", "--json", "--limit", "500"))
    detail = json.loads(_operator(pipeline, "completions", completion_id, "--json"))
    job_types = json.loads(_operator(pipeline, "job-types", "--json"))

    assert run_id in {run["id"] for run in runs}
    assert completion_id in {completion["id"] for completion in completions}
    assert detail == pipeline.detail(completion_id) | {"handler_runs": detail["handler_runs"]}
    assert run_id in {run["id"] for run in detail["handler_runs"]}
    assert str(DOOMED) in {row["id"] for row in job_types}


def test_token_list_as_json(pipeline: Pipeline) -> None:
    result = cli.jobhooks("token", "list", "--json", "--config", str(pipeline.config))

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["role"] for row in rows} >= {"admin", "viewer"}
    assert str(AGENT_A) in {row["agent_id"] for row in rows}
    for token in pipeline.tokens.values():
        assert token not in result.stdout


def test_version() -> None:
    result = run_cli("--version")

    assert result.returncode == 0
    assert result.stdout == f"jobhooks {jobhooks.__version__}\n"


def test_revoking_a_whole_token_prints_its_id_never_its_secret(pipeline: Pipeline) -> None:
    token = cli.token(pipeline.config, "--agent", str(uuid.uuid4()))
    token_id, secret = token.split("_")[1], token.split("_", 2)[2]

    revoked = cli.jobhooks("token", "revoke", token, "--config", str(pipeline.config))
    again = cli.jobhooks("token", "revoke", token, "--config", str(pipeline.config))

    assert revoked.stdout.strip() == f"Revoked {token_id}."
    assert again.exit_code == 1 and f"no active token '{token_id}'" in again.stderr
    assert secret not in revoked.output + again.output
