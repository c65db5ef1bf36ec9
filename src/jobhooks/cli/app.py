"""The ``jobhooks`` command: one Typer app; each verb lives in a module of its own."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from jobhooks import __version__
from jobhooks.errors import JobhooksError

__all__ = ["ConfigOption", "app", "console", "err_console", "fail", "main", "setup_logging"]

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


console = Console(highlight=False, width=_width())
err_console = Console(stderr=True, highlight=False, width=_width())

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


def fail(message: str, *details: str, code: int = 1) -> NoReturn:
    """Print an error and its details on stderr, then exit with ``code``."""
    # Messages name sections such as [platform]: they are text, not markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    for detail in details:
        err_console.print(f"  - {detail}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr in one plain format (level from JOBHOOKS_LOG_LEVEL if set)."""
    logging.basicConfig(
        level=os.environ.get("JOBHOOKS_LOG_LEVEL", level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # One line per request to the platform would drown the poller's own messages.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main() -> None:
    """Entry point of the ``jobhooks`` console script."""
    from jobhooks.cli import (  # noqa: F401  (importing a module registers its verbs)
        config_commands,
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
