"""On PostgreSQL the schema is the operator's to upgrade: ``serve`` and ``worker`` refuse
a database that is behind and say which command fixes it."""

from __future__ import annotations

from sqlalchemy import inspect
from support.server import free_port, run_cli

from jobhooks.store.migrate import current_revision, head_revision
from multinode.nodes import Cluster

HANDLERS = """
[[handlers]]
name = "log"
type = "log"
job_types = "*"
"""


def test_serve_refuses_an_unmigrated_database_until_db_upgrade(empty_cluster: Cluster) -> None:
    cluster = empty_cluster
    config = str(cluster.write_config(HANDLERS))

    for verb in (["serve", "--listen", f"127.0.0.1:{free_port()}"], ["worker"]):
        refused = run_cli(*verb, "--config", config, timeout=30)
        assert refused.returncode != 0, refused.stderr
        assert "jobhooks db upgrade" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
    assert inspect(cluster.engine).get_table_names() == [], "refusing creates nothing"

    upgraded = run_cli("db", "upgrade", "--config", config)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from empty to {head_revision()}" in upgraded.stdout
    assert current_revision(cluster.engine) == head_revision()
    again = run_cli("db", "upgrade", "--config", config)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr

    node = cluster.api()
    with node.client() as client:
        assert client.get("/healthz").status_code == 200
