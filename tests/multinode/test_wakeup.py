"""LISTEN/NOTIFY: a worker on another node starts a new run at once, not at its next poll."""

from __future__ import annotations

import random
import time
from typing import Any

from support.reports import AGENT_A, report
from support.server import wait_for

from multinode.nodes import Cluster, completion_detail

POLL_INTERVAL = 1.0
"""How often an idle worker looks for due runs without being woken."""
SAMPLES = 6


def test_a_worker_elsewhere_is_woken_by_the_check_in(cluster: Cluster) -> None:
    trace = cluster.directory / "record.log"
    cluster.write_config(
        f"""
        [[handlers]]
        name = "record"
        type = "multinode.handlers:Recorder"
        job_types = "*"
        properties = {{ path = "{trace}" }}
        """
    )
    node = cluster.api()
    cluster.worker()
    cluster.wait_listening("jobhooks_runs", 1)
    agent = cluster.token("agent", AGENT_A)
    admin = cluster.token("admin")
    latencies = []
    with node.client(agent) as orchestrator, node.client(admin) as operator:
        # Each check-in lands at another point of the worker's poll cycle: polling
        # alone would start each run 0.5 s late on average, and rarely all early.
        for _ in range(SAMPLES):
            time.sleep(random.uniform(0.1, 0.4))
            answer = orchestrator.post("/api/v1/job-completions", json=report())
            assert answer.status_code == 202, answer.text
            completion_id = answer.json()["id"]

            def started(completion_id: str = completion_id) -> dict[str, Any] | None:
                [run] = completion_detail(operator, completion_id)["handler_runs"]
                return run if run["status"] == "succeeded" else None

            run = wait_for(started, 10, f"the run of {completion_id}")
            latencies.append(run["started_at"] - run["created_at"])
    shown = ", ".join(f"{seconds * 1000:.0f} ms" for seconds in latencies)
    print(f"\ndispatch latency through NOTIFY: {shown}")
    assert max(latencies) < POLL_INTERVAL / 2, latencies
