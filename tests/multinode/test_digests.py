"""Digests on two API nodes sharing PostgreSQL: a burst on one machine reported to both at
once is one digest, delivered once by a worker process, with every completion in it."""

from __future__ import annotations

from pathlib import Path

from support.reports import AGENT_A, report
from support.server import wait_for

from multinode.handlers import trace_lines
from multinode.nodes import Cluster, report_at_once

PATH = "/api/v1/job-completions"


def _digests(cluster: Cluster, wait: str) -> Path:
    """Register a digest per machine, collecting ``wait``; returns its trace file."""
    trace = cluster.directory / "digests.log"
    cluster.write_config(
        f"""
        [[handlers]]
        name = "digest"
        type = "multinode.handlers:DigestRecorder"
        job_types = "*"
        group_by = ["client_machine"]
        group_wait = "{wait}"
        properties = {{ path = "{trace}" }}
        """
    )
    return trace


def test_a_burst_reported_to_two_api_nodes_is_one_digest_delivered_once(
    cluster: Cluster,
) -> None:
    trace = _digests(cluster, "4s")
    nodes = [cluster.api(), cluster.api()]
    cluster.worker()
    token = cluster.token("agent", AGENT_A)
    answers = report_at_once(
        nodes, token, lambda: report(client_machine="orch13.example.com"), senders=4, each=10
    )

    assert len(answers) == 40
    runs = {run["id"] for answer in answers for run in answer["handler_runs"]}
    assert len(runs) == 1, "one digest for the machine, whichever node took each report"
    assert {run["status"] for a in answers for run in a["handler_runs"]} == {"collecting"}
    lines = wait_for(lambda: trace_lines(trace), 30, "the digest to be delivered")
    wait_for(lambda: cluster.run_counts() == {"succeeded": 1}, 10, "the run to succeed")
    [line] = trace_lines(trace)
    delivered = line[3].split(",")
    assert sorted(delivered) == sorted(answer["id"] for answer in answers)
    assert lines == [line]


def test_an_api_node_killed_while_a_digest_collects_loses_none_of_it(cluster: Cluster) -> None:
    trace = _digests(cluster, "6s")
    first, second = cluster.api(), cluster.api()
    cluster.worker()
    token = cluster.token("agent", AGENT_A)
    acknowledged: list[str] = []
    for node, count in ((first, 8), (second, 4)):
        with node.client(token) as client:
            for _ in range(count):
                response = client.post(PATH, json=report(client_machine="orch14.example.com"))
                assert response.status_code == 202, response.text
                acknowledged.append(response.json()["id"])
        if node is first:
            first.kill()  # SIGKILL, its part of the digest acknowledged and still collecting

    lines = wait_for(lambda: trace_lines(trace), 30, "the digest to be delivered")
    wait_for(lambda: cluster.run_counts() == {"succeeded": 1}, 10, "the run to succeed")
    [line] = lines
    assert line[3].split(",") == acknowledged, "every acknowledged failure, in order, once"
