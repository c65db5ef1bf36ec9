"""Notification rules on two API nodes sharing PostgreSQL: failures of one job reported to
both at once are each counted once, and the streak fires exactly once."""

from __future__ import annotations

import uuid

from support.reports import AGENT_A, report

from multinode.nodes import Cluster, report_at_once

PATH = "/api/v1/job-completions"
PAGE = """
    [[handlers]]
    name = "page"
    type = "log"
    job_types = "*"
    when = ["failure-streak", "recovered"]
    streak = 10
    """


def test_one_jobs_failures_at_two_api_nodes_fire_its_streak_once(cluster: Cluster) -> None:
    cluster.write_config(PAGE)
    nodes = [cluster.api(), cluster.api()]
    token = cluster.token("agent", AGENT_A)
    job = uuid.uuid4()
    answers = report_at_once(
        nodes, token, lambda: report(job_id=job, current_retry_count=None), senders=4, each=6
    )
    with nodes[0].client(token) as client:
        ended = client.post(PATH, json=report(job_id=job, job_result="Success"))

    assert len(answers) == 24
    fired = [run["trigger"] for a in answers for run in a["handler_runs"] if run["trigger"]]
    assert [(t["kind"], t["streak"]) for t in fired] == [("failure-streak", 10)]
    counts = sorted(cluster.detail(answer["id"])["current_retry_count"] for answer in answers)
    assert counts == list(range(24)), "each failure counted once, whichever node took it"
    [recovered] = ended.json()["handler_runs"]
    assert recovered["trigger"]["kind"] == "recovered" and recovered["trigger"]["streak"] == 24
