"""What several verbs share: opening the runtime or the store of a configuration."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from jobhooks.cli.app import err_console, fail
from jobhooks.config.locate import ConfigChoice, describe_database, locate_config
from jobhooks.errors import ConfigError, StoreError
from jobhooks.service.runtime import Runtime
from jobhooks.service.startup import open_runtime, open_store
from jobhooks.store import Store

__all__ = ["choose_config", "run_until_stopped", "runtime_or_exit", "say_using", "with_store"]

T = TypeVar("T")


def choose_config(given: Path | None) -> ConfigChoice:
    """The configuration a verb runs with: ``--config``, else ./jobhooks.toml, else
    JOBHOOKS_CONFIG, else the built-in default (see :func:`locate_config`)."""
    return locate_config(given)


def say_using(choice: ConfigChoice, database: str) -> None:
    """One line on stderr: which configuration and which database this command uses."""
    err_console.print(
        f"Using {choice.describe()}; database {describe_database(database)}",
        markup=False,
        soft_wrap=True,
    )


def runtime_or_exit(
    choice: ConfigChoice, *, with_worker: bool, poll: bool | None = None
) -> Runtime:
    """The runtime of a configuration (see :func:`~jobhooks.service.startup.open_runtime`),
    or exit 1 listing every problem in the configuration, or why the database cannot open."""
    try:
        runtime = open_runtime(choice.path, with_worker=with_worker, poll=poll)
    except ConfigError as exc:
        fail(f"refusing to start: {_name(choice)} is invalid", *exc.problems)
    except StoreError as exc:
        fail(str(exc))
    say_using(choice, runtime.database)
    return runtime


def with_store(choice: ConfigChoice, work: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Open the store of a configuration (or exit 1 saying why not), say which, run
    ``work`` on it, close it."""
    try:
        store = open_store(choice.path)
    except ConfigError as exc:
        fail(f"cannot use {_name(choice)}", *exc.problems)
    except StoreError as exc:
        fail(str(exc))
    say_using(choice, store.url)
    try:
        return asyncio.run(work(store))
    finally:
        store.close()


def _name(choice: ConfigChoice) -> str:
    return str(choice.path) if choice.path is not None else "the built-in default"


def run_until_stopped(
    runtime: Runtime, started: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run a runtime without the API until SIGINT or SIGTERM, then stop it cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        if started is not None:
            await started()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(main())
