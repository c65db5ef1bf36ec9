"""A node killed while it ran handlers: its runs are finished within seconds of a restart,
not when their leases run out, and each is recorded as a lost attempt."""

from __future__ import annotations

import time
from pathlib import Path

from multinode.handlers import trace_lines
from support import cli
from support.reports import AGENT_A, report
from support.server import StartServer, wait_for, write_config

RESUMED_WITHIN = 20.0
"""The design's promise: a restarted node finishes its predecessor's runs within 20 s."""


def test_a_restarted_node_finishes_what_its_killed_predecessor_held(
    tmp_path: Path, start_server: StartServer
) -> None:
    trace = tmp_path / "stall.log"
    # The defaults: a run's lease is its timeout (60 s) plus [server] lease (60 s).
    config = write_config(
        tmp_path,
        f"""
        [[handlers]]
        name = "stall"
        type = "multinode.handlers:StallsOnFirstAttempt"
        job_types = "*"
        timeout = 60
        properties = {{ path = "{trace}", stall = 120 }}
        """,
    )
    admin, agent = cli.token(config, "--admin"), cli.token(config, "--agent", str(AGENT_A))
    server = start_server(config)
    with server.client(agent) as client:
        answer = client.post("/api/v1/job-completions", json=report())
        assert answer.status_code == 202, answer.text
    completion_id = answer.json()["id"]
    wait_for(lambda: trace_lines(trace), 10, "the first attempt to start")
    server.kill()

    restarted = start_server(config)
    started = time.monotonic()

    def finished() -> list[str] | None:
        return next((line for line in trace_lines(trace) if line[0] == "done"), None)

    done = wait_for(finished, RESUMED_WITHIN, "the restarted node to finish the run")
    took = time.monotonic() - started
    assert done[:3] == ["done", completion_id, "2"]
    with restarted.client(admin) as client:
        detail = wait_for(
            lambda: _succeeded(client.get(f"/api/v1/job-completions/{completion_id}").json()),
            10,
            "the outcome to be recorded",
        )
    lost, succeeded = detail["handler_runs"][0]["attempt_history"]
    assert lost["outcome"] == "lost" and "process is gone" in lost["error"]
    assert lost["duration"] > 0, "the lost attempt is timed from when it started"
    assert succeeded["outcome"] == "succeeded"
    print(f"\nthe restarted node finished its predecessor's run {took:.1f} s after starting")


def _succeeded(detail: dict[str, object]) -> dict[str, object] | None:
    runs = detail["handler_runs"]
    assert isinstance(runs, list)
    return detail if all(run["status"] == "succeeded" for run in runs) else None
