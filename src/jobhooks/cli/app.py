"""The ``jobhooks`` command: one Typer app; each verb lives in a module of its own."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn, cast

import typer
from rich.markup import escape

from jobhooks import __version__
from jobhooks.cli.output import TerminalConsole
from jobhooks.errors import JobhooksError
from jobhooks.escapes import escape_controls
from jobhooks.logs import LOG_FORMATS, LOG_LEVELS, LogFormat, configure_logging, current_setup

__all__ = [
    "FORMAT_ENV",
    "LEVEL_ENV",
    "ConfigOption",
    "app",
    "console",
    "env_choice",
    "err_console",
    "fail",
    "main",
    "notice",
    "setup_logging",
]

LEVEL_ENV = "JOBHOOKS_LOG_LEVEL"
FORMAT_ENV = "JOBHOOKS_LOG_FORMAT"

app = typer.Typer(
    name="jobhooks",
    help="Run Python handlers after certificate-orchestrator jobs complete.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _width() -> int | None:
    # Rich falls back to 80 columns off a terminal; tables of GUIDs need more.
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120


console = TerminalConsole(width=_width())
err_console = TerminalConsole(stderr=True, width=_width())

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Path of jobhooks.toml (default: ./jobhooks.toml when present, else the file "
        "JOBHOOKS_CONFIG names, else the built-in default).",
        show_default=False,
    ),
]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"jobhooks {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run Python handlers after certificate-orchestrator jobs complete."""


def _logs_json() -> bool:
    return current_setup()[1] == "json"


def notice(message: str) -> None:
    """Tell the operator something on stderr: a line of text, or an INFO record when the
    process logs JSON (so every line a log collector reads is one JSON object)."""
    if _logs_json():
        logging.getLogger("jobhooks").info("%s", message)
    else:
        err_console.print(message, markup=False, soft_wrap=True)


def fail(message: str, *details: str, code: int = 1) -> NoReturn:
    """Print an error and its details on stderr (an ERROR record with ``details`` when the
    process logs JSON), then exit with ``code``."""
    if _logs_json():
        extra = {"details": list(details)} if details else None
        logging.getLogger("jobhooks").error("%s", message, extra=extra)
        raise typer.Exit(code)
    # Messages name sections such as [platform]: they are text, not markup. Each is one
    # line: what it quotes (a platform's answer, a file name) cannot start another.
    shown = escape_controls(message, keep="\t")
    err_console.print(f"[bold red]error:[/] {escape(shown)}", markup=True, soft_wrap=True)
    for detail in details:
        line = escape_controls(detail, keep="\t")
        err_console.print(f"  - {line}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr at ``level`` as text, unless JOBHOOKS_LOG_LEVEL or JOBHOOKS_LOG_FORMAT
    say otherwise."""
    configure_logging(
        env_choice(LEVEL_ENV, LOG_LEVELS) or level.lower(),
        cast(LogFormat, env_choice(FORMAT_ENV, LOG_FORMATS) or "text"),
    )


def env_choice(name: str, choices: Sequence[str]) -> str | None:
    """The environment variable ``name`` when it is set (one of ``choices``, any case), or
    None; exit 1 naming it when it holds something else."""
    value = os.environ.get(name, "").strip().lower()
    if value and value not in choices:
        fail(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value or None


def main() -> None:
    """Entry point of the ``jobhooks`` console script."""
    from jobhooks.cli import (  # noqa: F401  (importing a module registers its verbs)
        config_commands,
        db_commands,
        demo_commands,
        operator_commands,
        poll_commands,
        serve_commands,
        token_commands,
    )

    try:
        app()
    except JobhooksError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
