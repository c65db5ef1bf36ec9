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


def test_a_database_a_newer_jobhooks_migrated_is_refused_in_one_line(
    empty_cluster: Cluster,
) -> None:
    cluster = empty_cluster
    config = str(cluster.write_config(HANDLERS))
    assert run_cli("db", "upgrade", "--config", config).returncode == 0
    with cluster.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0042'")

    for verb in (["serve", "--listen", f"127.0.0.1:{free_port()}"], ["db", "upgrade"]):
        refused = run_cli(*verb, "--config", config, timeout=30)
        assert refused.returncode != 0, refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
        assert "revision 0042, which this jobhooks does not know" in refused.stderr
        assert "a newer jobhooks migrated it" in refused.stderr
        assert "run 'jobhooks db upgrade" not in refused.stderr, "it is ahead, not behind"
