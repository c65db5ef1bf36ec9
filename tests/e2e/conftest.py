"""Real ``jobhooks serve`` processes, started per test (or once for the package) and stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.pipeline import Pipeline, running_pipeline
from support.server import ServerProcess, StartServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(config)`` -> a healthy server; every one started is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(config: Path) -> ServerProcess:
        server = ServerProcess(config, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="package")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One server shared by the tests that watch the pipeline (see :mod:`support.pipeline`)."""
    with running_pipeline(tmp_path_factory.mktemp("pipeline")) as running:
        yield running
