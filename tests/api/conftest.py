"""The API app in this process, its lifespan running, with a token of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.app import Api, TestClient
from support.reports import AGENT_A, AGENT_B
from support.server import write_config

from jobhooks.api import create_app
from jobhooks.registry import load
from jobhooks.runtime import Runtime
from jobhooks.store.tokens import create_token


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
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
    )
    runtime = Runtime(load(config), config)
    engine = runtime.store.engine
    tokens = {
        "admin": create_token(engine, "admin")[0],
        "viewer": create_token(engine, "viewer")[0],
        "agent": create_token(engine, "agent", AGENT_A)[0],
        "agent_b": create_token(engine, "agent", AGENT_B)[0],
    }
    with TestClient(create_app(runtime)) as client:
        yield Api(client, runtime, tmp_path, tokens)
