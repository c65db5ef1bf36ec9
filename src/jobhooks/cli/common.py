"""What several verbs share: loading the configuration to serve, opening the database."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Engine

from jobhooks.cli.app import err_console, fail
from jobhooks.config.load import read_config
from jobhooks.errors import ConfigError, StoreError
from jobhooks.poll.wiring import startup_catalog
from jobhooks.registry import LoadedConfig
from jobhooks.runtime import DEFAULT_DATA_DIR, Runtime, load_for_serving, resolve_database
from jobhooks.store.database import open_database as store_database

__all__ = ["load_or_exit", "open_database", "run_until_stopped", "serving_catalog"]


def serving_catalog(config: Path | None) -> dict[str, uuid.UUID] | None:
    """The job type catalog a server resolves names with: the stored one, synced from
    the platform first when ``[poll] enabled``. None without a configuration file."""
    if config is None:
        return None
    try:
        parsed, _problems = read_config(config)
        database = resolve_database(parsed.server.database, config)
        return startup_catalog(parsed, database, sync=parsed.poll.enabled)
    except Exception as exc:
        # The configuration's own problems are reported when it is loaded next.
        logging.getLogger("jobhooks").debug("no job type catalog: %s", exc)
        return None


def load_or_exit(
    config: Path | None,
    *,
    quiet: bool = False,
    catalog: Mapping[str, uuid.UUID] | None = None,
) -> LoadedConfig:
    """The configuration to serve, or exit 1 listing every problem in it."""
    try:
        loaded = load_for_serving(config, catalog)
    except ConfigError as exc:
        fail(f"refusing to start: {config} is invalid", *exc.problems)
    if config is None and not quiet:
        err_console.print(
            f"No --config given: running the built-in default (SQLite in ./{DEFAULT_DATA_DIR}, "
            "the 'log' handler for every job type).",
            markup=False,
        )
    return loaded


def open_database(config: Path | None, *, migrate: bool | None = None) -> tuple[Engine, str]:
    """An engine on the configured database (the embedded SQLite one is created and
    migrated), or exit 1 saying why it cannot be opened."""
    loaded = load_or_exit(config, quiet=True)
    url = resolve_database(loaded.config.server.database, config)
    try:
        return store_database(url, migrate=migrate, pool_size=2), url
    except StoreError as exc:
        fail(str(exc))


def run_until_stopped(runtime: Runtime) -> None:
    """Run a runtime without the API until SIGINT or SIGTERM, then stop it cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(main())
