"""What several verbs share: opening the runtime or the store of a configuration."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from jobhooks.cli.app import FORMAT_ENV, LEVEL_ENV, env_choice, fail, notice
from jobhooks.config.locate import ConfigChoice, describe_database, locate_config
from jobhooks.config.schema import JobhooksConfig
from jobhooks.errors import ConfigError, StoreError
from jobhooks.logs import LOG_FORMATS, LOG_LEVELS, LogFormat, configure_logging
from jobhooks.service.runtime import Runtime
from jobhooks.service.startup import open_runtime, open_store, settings
from jobhooks.store import Store

__all__ = [
    "LogFormatOption",
    "LogLevelOption",
    "StrictOption",
    "choose_config",
    "run_until_stopped",
    "runtime_or_exit",
    "say_using",
    "setup_process_logging",
    "with_store",
]

T = TypeVar("T")

LogLevelOption = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="debug, info, warning, error or critical (default: JOBHOOKS_LOG_LEVEL, else "
        "[server] log_level, else info).",
        show_default=False,
    ),
]
LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="text, or json: one JSON object per line, for a log collector (default: "
        "JOBHOOKS_LOG_FORMAT, else [server] log_format, else text).",
        show_default=False,
    ),
]


def _option(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value.lower() not in choices:
        fail(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def setup_process_logging(
    choice: ConfigChoice, level: str | None, log_format: str | None, default_level: str = "info"
) -> None:
    """Logging of a serve, worker or poll process: each of the level and the format from
    its command-line option, else its environment variable, else ``[server]``, else the
    default. A configuration that cannot be read leaves the defaults (the command then
    says why it cannot use it)."""
    chosen_level = _option("--log-level", level, LOG_LEVELS) or env_choice(LEVEL_ENV, LOG_LEVELS)
    chosen_format = _option("--log-format", log_format, LOG_FORMATS) or env_choice(
        FORMAT_ENV, LOG_FORMATS
    )
    try:
        server = settings(choice.path).server
    except ConfigError:
        server = None
    if server is not None:
        chosen_level = chosen_level or server.log_level
        chosen_format = chosen_format or server.log_format
    configure_logging(chosen_level or default_level, cast(LogFormat, chosen_format or "text"))


def choose_config(given: Path | None) -> ConfigChoice:
    """The configuration a verb runs with: ``--config``, else ./jobhooks.toml, else
    JOBHOOKS_CONFIG, else the built-in default (see :func:`locate_config`)."""
    return locate_config(given)


def say_using(choice: ConfigChoice, database: str) -> None:
    """One line on stderr: which configuration and which database this command uses."""
    notice(f"Using {choice.describe()}; database {describe_database(database)}")


StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse to start when any registration has a problem, naming every problem "
        "(for deploy pipelines); without it, such a registration is quarantined.",
    ),
]


def runtime_or_exit(
    choice: ConfigChoice, *, with_worker: bool, poll: bool | None = None, strict: bool = False
) -> Runtime:
    """The runtime of a configuration (see :func:`~jobhooks.service.startup.open_runtime`),
    or exit 1 listing the problems that stop it, or why the database cannot open."""
    try:
        runtime = open_runtime(choice.path, with_worker=with_worker, poll=poll, strict=strict)
    except ConfigError as exc:
        fail(f"refusing to start: {_name(choice)} is invalid", *exc.problems)
    except StoreError as exc:
        fail(str(exc))
    say_using(choice, runtime.database)
    _quarantine_notice(runtime)
    return runtime


def _quarantine_notice(runtime: Runtime) -> None:
    for entry in runtime.live.registry.problems:
        state = "kept at its last good version" if entry.kept else "quarantined"
        if not entry.kept and entry.holds:
            state += " (its completions are held until a reload fixes it)"
        notice(f"registration {entry.name!r} {state}:")
        for problem in entry.problems:
            notice(f"  - {problem}")


def with_store(
    choice: ConfigChoice,
    work: Callable[[Store], Coroutine[Any, Any, T]],
    config: JobhooksConfig | None = None,
) -> T:
    """Open the store of a configuration (or exit 1 saying why not), say which, run
    ``work`` on it, close it. ``config`` is the configuration already read (or changed)."""
    try:
        store = open_store(choice.path, config)
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
