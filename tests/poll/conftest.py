"""Pull mode against a loopback stand-in for the platform (see :mod:`support.keyfactor`)."""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pg import pg_database, pg_server, pg_template
from sqlalchemy import create_engine, text
from support.keyfactor import FakeKeyfactor, KeyfactorServer, platform_env, platform_toml

from jobhooks.config.defaults import resolve_database
from jobhooks.config.load import read_config
from jobhooks.intake import LeasePolicy, RunPlanner
from jobhooks.platform.client import build_clients
from jobhooks.poll import Poller
from jobhooks.poll.wiring import build_poller
from jobhooks.registry import LoadedConfig, load
from jobhooks.service.startup import serving_catalog
from jobhooks.store import Store

__all__ = ["Platform", "pg_database", "pg_server", "pg_template"]

RECORD_ALL = """
[[handlers]]
name = "record"
type = "support.handlers:Appender"
job_types = "*"
properties = {{ path = "{directory}/record.log" }}
"""
"""A handler for every job type that appends ``completion_id job_type ...`` per run."""


@dataclass
class Platform:
    """A running fake platform and a jobhooks.toml pointing at it."""

    fake: FakeKeyfactor
    server: KeyfactorServer
    directory: Path

    def write_config(
        self,
        poll: str = "",
        handlers: str = RECORD_ALL,
        *,
        oauth: bool = False,
        database: str | None = None,
        extra: str = "",
        platform: str = "",
    ) -> Path:
        """A jobhooks.toml with its own SQLite database (or ``database``), ``[poll]``
        enabled with a short interval, and ``handlers``."""
        path = self.directory / "jobhooks.toml"
        url = database or f"sqlite:///{self.directory / 'data' / 'jobhooks.db'}"
        path.write_text(
            "[server]\n"
            f'database = "{url}"\n'
            "lease = 2\n\n"
            + platform_toml(self.server, oauth=oauth)
            + textwrap.dedent(platform)
            + "\n[poll]\nenabled = true\n"
            + _with_defaults(textwrap.dedent(poll), {"interval": "0.1", "lease": "3"})
            + "\n"
            + textwrap.dedent(extra)
            + "\n"
            + textwrap.dedent(handlers).format(directory=self.directory),
            encoding="utf-8",
        )
        return path

    async def load(self, config: Path, store: Store) -> LoadedConfig:
        """The configuration, job type names resolved from the platform's catalog (synced
        into ``store`` first when the platform answers, as ``serve`` does)."""
        parsed, problems = read_config(config)
        assert not problems, problems
        return load(config, await serving_catalog(store, parsed))

    def database(self, config: Path) -> str:
        """The database URL ``config`` names."""
        parsed, _problems = read_config(config)
        return resolve_database(parsed.server.database, config)

    @contextlib.asynccontextmanager
    async def poller(
        self, config: Path, node: str = "test", clock: Callable[[], float] = time.time
    ) -> AsyncIterator[Poller]:
        """A poller holding the lease, on its own store and clients (all closed after);
        ``clock`` is its own (the store keeps real time)."""
        store = Store(self.database(config))
        loaded = await self.load(config, store)
        clients = build_clients(loaded.config.platform)
        planner = RunPlanner(LeasePolicy(1.0))
        try:
            poller = build_poller(
                store,
                clients,
                loaded.config,
                lambda job_type_id: planner.plan(loaded.registry, job_type_id),
                node_id=node,
                clock=clock,
            )
            assert await poller.acquire()
            yield poller
            await poller.release()
        finally:
            await clients.aclose()
            store.close()

    def completions(self, database: str | None = None) -> list[dict[str, Any]]:
        """Every stored completion, by job history id."""
        url = database or f"sqlite:///{self.directory / 'data' / 'jobhooks.db'}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT * FROM completions ORDER BY job_history_id, id")
                )
                return [dict(row._mapping) for row in rows]
        finally:
            engine.dispose()


def _with_defaults(table: str, defaults: dict[str, str]) -> str:
    given = {line.split("=")[0].strip() for line in table.splitlines() if "=" in line}
    extra = "".join(f"{key} = {value}\n" for key, value in defaults.items() if key not in given)
    return extra + table


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """A fake platform (names for enums, Basic auth) on loopback; closed after the test."""
    fake = FakeKeyfactor()
    server = KeyfactorServer(fake)
    for name, value in platform_env(fake).items():
        monkeypatch.setenv(name, value)
    try:
        yield Platform(fake, server, tmp_path)
    finally:
        server.close()


def history_ids(items: list[dict[str, Any]]) -> list[int]:
    """The job history ids of stored completions, in order."""
    return [item["job_history_id"] for item in items]
