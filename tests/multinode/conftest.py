"""Several jobhooks processes sharing one PostgreSQL database, a fresh one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import PostgresServer, pg_database, pg_empty_database, pg_server, pg_template

from multinode.nodes import Cluster, running_cluster

__all__ = [
    "cluster",
    "empty_cluster",
    "pg_database",
    "pg_empty_database",
    "pg_server",
    "pg_template",
]


@pytest.fixture
def cluster(tmp_path: Path, pg_server: PostgresServer, pg_database: str) -> Iterator[Cluster]:
    """Start API nodes and workers on a fresh migrated database; all stopped afterwards."""
    with running_cluster(tmp_path, pg_server, pg_database) as running:
        yield running


@pytest.fixture
def empty_cluster(
    tmp_path: Path, pg_server: PostgresServer, pg_empty_database: str
) -> Iterator[Cluster]:
    """A :class:`Cluster` on a database without any schema (``jobhooks db upgrade`` not run)."""
    with running_cluster(tmp_path, pg_server, pg_empty_database) as running:
        yield running
