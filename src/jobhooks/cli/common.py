"""What several verbs share: opening the runtime or the store of a configuration."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from jobhooks.cli.app import err_console, fail
from jobhooks.config.defaults import DEFAULT_DATA_DIR
from jobhooks.errors import ConfigError, StoreError
from jobhooks.service.runtime import Runtime
from jobhooks.service.startup import open_runtime, open_store
from jobhooks.store import Store

__all__ = ["StrictOption", "run_until_stopped", "runtime_or_exit", "with_store"]

T = TypeVar("T")


def _default_notice(config: Path | None, quiet: bool) -> None:
    if config is None and not quiet:
        err_console.print(
            f"No --config given: running the built-in default (SQLite in ./{DEFAULT_DATA_DIR}, "
            "the 'log' handler for every job type).",
            markup=False,
        )


StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse to start when any registration has a problem, naming every problem "
        "(for deploy pipelines); without it, such a registration is quarantined.",
    ),
]


def runtime_or_exit(
    config: Path | None,
    *,
    with_worker: bool,
    poll: bool | None = None,
    quiet: bool = False,
    strict: bool = False,
) -> Runtime:
    """The runtime of ``config`` (see :func:`~jobhooks.service.startup.open_runtime`), or
    exit 1 listing the problems that stop it, or why the database cannot open."""
    try:
        runtime = open_runtime(config, with_worker=with_worker, poll=poll, strict=strict)
    except ConfigError as exc:
        fail(f"refusing to start: {config} is invalid", *exc.problems)
    except StoreError as exc:
        fail(str(exc))
    _default_notice(config, quiet)
    _quarantine_notice(runtime)
    return runtime


def _quarantine_notice(runtime: Runtime) -> None:
    for entry in runtime.live.registry.problems:
        state = "kept at its last good version" if entry.kept else "quarantined"
        if not entry.kept and entry.holds:
            state += " (its completions are held until a reload fixes it)"
        err_console.print(f"registration {entry.name!r} {state}:", markup=False)
        for problem in entry.problems:
            err_console.print(f"  - {problem}", markup=False, soft_wrap=True)


def with_store(config: Path | None, work: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Open the store of ``config`` (or exit 1 saying why not), run ``work`` on it, close it."""
    try:
        store = open_store(config)
    except ConfigError as exc:
        fail(f"cannot use {config}", *exc.problems)
    except StoreError as exc:
        fail(str(exc))
    try:
        return asyncio.run(work(store))
    finally:
        store.close()


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
