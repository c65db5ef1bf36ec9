"""Handlers that hang, raise or kill their process harm neither check-ins nor other handlers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support import cli
from support.handlers import read_lines
from support.pipeline import no_open_runs
from support.reports import AGENT_A, BAD, INVENTORY, report
from support.server import StartServer, wait_for, write_config

CHECKINS = 200
BAD_COMPLETIONS = 3


def test_bad_handlers_are_contained(tmp_path: Path, start_server: StartServer) -> None:
    """Three bad completions make six hung sync attempts, more than the four handler
    threads: the normal handler must still run every time."""
    trace = tmp_path / "normal.log"
    bad = f'job_types = ["{BAD}"]\nmax_attempts = 2\nbackoff = 0.05'
    config = write_config(
        tmp_path,
        server="threads = 4",
        handlers=f"""
[[handlers]]
name = "normal"
type = "support.handlers:Appender"
job_types = "*"
timeout = 5
properties = {{ path = "{trace}" }}

[[handlers]]
name = "hangs"
type = "support.handlers:Hangs"
timeout = 1
{bad}

[[handlers]]
name = "hangs-async"
type = "support.handlers:AsyncHangs"
timeout = 1
{bad}

[[handlers]]
name = "raises"
type = "support.handlers:Raises"
{bad}

[[handlers]]
name = "exits"
type = "support.handlers:Exits"
isolation = "process"
timeout = 20
{bad}
""",
    )
    admin_token = cli.token(config, "--admin")
    agent_token = cli.token(config, "--agent", str(AGENT_A))
    server = start_server(config)

    with server.client(agent_token) as agent, server.client(admin_token) as admin:
        bad_ids = []
        for _ in range(BAD_COMPLETIONS):
            answer = agent.post("/api/v1/job-completions", json=report(job_type_id=BAD))
            assert answer.status_code == 202
            assert len(answer.json()["handler_runs"]) == 5
            bad_ids.append(answer.json()["id"])

        latencies = []
        good_ids = []
        for _ in range(CHECKINS):
            started = time.perf_counter()
            answer = agent.post("/api/v1/job-completions", json=report(job_type_id=INVENTORY))
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 202
            good_ids.append(answer.json()["id"])
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        p50 = latencies[len(latencies) // 2]
        print(
            f"\ncheck-ins while bad handlers run: p50 {p50 * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
        assert p99 < 0.5

        def runs_of(completion_id: str) -> list[dict[str, Any]]:
            detail = admin.get(f"/api/v1/job-completions/{completion_id}").json()
            runs: list[dict[str, Any]] = detail["handler_runs"]
            return runs

        try:
            wait_for(lambda: no_open_runs(admin), 30, "every run to succeed or die", interval=0.2)
        except AssertionError as exc:
            exc.add_note(server.log())
            raise

        handled = {line.split()[0] for line in read_lines(trace)}
        assert set(good_ids) | set(bad_ids) <= handled
        succeeded = admin.get(
            "/api/v1/handler-runs",
            params={"status": "succeeded", "handler": "normal", "limit": 500},
        ).json()["items"]
        assert len(succeeded) == CHECKINS + BAD_COMPLETIONS

        expected = {
            "hangs": "timed out after 1 s",
            "hangs-async": "timed out after 1 s",
            "raises": "RuntimeError: handler exploded on purpose",
            "exits": "exited with code 3",
        }
        for completion_id in bad_ids:
            runs = {run["handler"]: run for run in runs_of(completion_id)}
            assert runs["normal"]["status"] == "succeeded"
            for handler, error in expected.items():
                run = runs[handler]
                assert run["status"] == "dead", run
                assert run["attempts"] == 2
                assert error in run["last_error"], run
        assert admin.get("/readyz").status_code == 200
