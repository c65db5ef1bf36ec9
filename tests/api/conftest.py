"""The API app in this process, its lifespan running, with a token of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import pg_database, pg_server, pg_template  # noqa: F401  (fixtures)
from support.app import Api, TestClient
from support.reports import AGENT_A, AGENT_B
from support.server import write_config
from support.tokens import make_token

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app


@pytest.fixture(params=["sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the app stores in: its own SQLite file (tests that must also run on
    PostgreSQL parametrise this fixture with ``"postgresql"``)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_database")
        return url
    return "sqlite:///data/jobhooks.db"


@pytest.fixture
def api(tmp_path: Path, database: str) -> Iterator[Api]:
    """The app for a config with one ``support.handlers:Appender`` for every job type."""
    config = write_config(
        tmp_path,
        f"""
        [[handlers]]
        name = "record"
        type = "support.handlers:Appender"
        job_types = "*"
        properties = {{ path = "{tmp_path / "record.log"}" }}
        """,
        server=f'database = "{database}"\n',
    )
    runtime = Runtime(load(config), config)
    store = runtime.store
    tokens = {
        "admin": make_token(store, "admin"),
        "viewer": make_token(store, "viewer"),
        "agent": make_token(store, "agent", AGENT_A),
        "agent_b": make_token(store, "agent", AGENT_B),
    }
    with TestClient(create_app(runtime)) as client:
        yield Api(client, runtime, tmp_path, tokens)
