"""The ``jobhooks`` command run in this process, on a console wide enough for GUID tables."""

from __future__ import annotations

import importlib
from pathlib import Path

from typer.testing import CliRunner, Result


def jobhooks(*args: str) -> Result:
    """``jobhooks ARGS`` in-process -> click Result (``exit_code``, ``stdout``, ``stderr``)."""
    from jobhooks.cli import (  # noqa: F401  (importing a module registers its verbs)
        app,
        db_commands,
        demo_commands,
        operator_commands,
        poll_commands,
        token_commands,
    )

    app_module = importlib.import_module("jobhooks.cli.app")

    widths = app_module.console.width, app_module.err_console.width
    app_module.console.width = app_module.err_console.width = 400
    try:
        return CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        app_module.console.width, app_module.err_console.width = widths


def token(config: Path, *role: str) -> str:
    """``jobhooks token create --config CONFIG ROLE...``: the token it prints, alone."""
    result = jobhooks("token", "create", "--config", str(config), *role)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jh_"), result.stdout
    return lines[0]
