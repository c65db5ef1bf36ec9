"""A reload on one node reaches every node on the database (PostgreSQL NOTIFY)."""

from __future__ import annotations

import time

import httpx
from support.server import wait_for

from multinode.nodes import Cluster

HANDLER = """
[[handlers]]
name = "{name}"
type = "log"
job_types = "*"
"""


def _names(client: httpx.Client) -> set[str]:
    response = client.get("/api/v1/handlers")
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


def test_a_reload_on_one_node_reaches_the_other(cluster: Cluster) -> None:
    cluster.write_config(HANDLER.format(name="first"))
    one, two = cluster.api(wait=False), cluster.api(wait=False)
    one.wait_healthy(30)
    two.wait_healthy(30)
    cluster.wait_listening("jobhooks_reload", 2)
    token = cluster.token("admin")
    with one.client(token) as first, two.client(token) as second:
        assert _names(first) == _names(second) == {"first"}

        cluster.write_config(HANDLER.format(name="first") + HANDLER.format(name="second"))
        assert _names(second) == {"first"}, "nothing reloads before it is asked to"
        answer = first.post("/api/v1/admin/reload")
        assert answer.status_code == 200, answer.text
        assert answer.json()["handlers"] == 2
        assert _names(first) == {"first", "second"}
        wait_for(lambda: _names(second) == {"first", "second"}, 10, "the other node to reload")

        # A file that cannot be used (not TOML) is refused where it is asked, and not
        # announced: the other node does not even try it. Both keep the last good one.
        cluster.write_config(HANDLER.format(name="third") + "\n[[handlers\n")
        refused = first.post("/api/v1/admin/reload")
        assert refused.status_code == 422, refused.text
        time.sleep(1.0)
        assert _names(first) == _names(second) == {"first", "second"}
        assert second.get("/api/v1/handlers").json()["last_reload"]["applied"] is True
