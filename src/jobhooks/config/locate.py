"""Which configuration a command uses when ``--config`` is not given: the same for every verb."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = ["CONFIG_ENV", "LOCAL_CONFIG", "ConfigChoice", "describe_database", "locate_config"]

LOCAL_CONFIG = Path("jobhooks.toml")
"""The file a command reads when it is present in the current folder."""

CONFIG_ENV = "JOBHOOKS_CONFIG"
"""The environment variable naming the file otherwise."""


@dataclass(frozen=True)
class ConfigChoice:
    """The configuration file a command runs with, and why that one."""

    path: Path | None
    """The file, or None for the built-in default configuration."""
    reason: str
    """How it was chosen: ``--config``, ``./jobhooks.toml``, ``JOBHOOKS_CONFIG`` or
    ``no configuration found``."""

    def describe(self) -> str:
        """``jobhooks.toml (./jobhooks.toml)``, or what the built-in default is."""
        if self.path is None:
            return (
                f"the built-in default configuration ({self.reason}: no --config, no "
                f"./{LOCAL_CONFIG}, {CONFIG_ENV} unset; the 'log' handler for every job type)"
            )
        return f"{self.path} ({self.reason})"


def locate_config(
    given: Path | None, *, cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> ConfigChoice:
    """The configuration a command uses: ``given`` (``--config``) when set; else
    ``./jobhooks.toml`` when it exists in ``cwd``; else the file ``JOBHOOKS_CONFIG`` names;
    else the built-in default (``path`` None)."""
    if given is not None:
        return ConfigChoice(given, "--config")
    folder = Path.cwd() if cwd is None else cwd
    if (folder / LOCAL_CONFIG).is_file():
        local = LOCAL_CONFIG if cwd is None else folder / LOCAL_CONFIG
        return ConfigChoice(local, f"./{LOCAL_CONFIG}")
    named = (os.environ if environ is None else environ).get(CONFIG_ENV, "").strip()
    if named:
        return ConfigChoice(Path(named), CONFIG_ENV)
    return ConfigChoice(None, "no configuration found")


def describe_database(url: str) -> str:
    """A database URL as it may be shown: its password masked, a SQLite path absolute."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database
        if database and database != ":memory:" and not Path(database).is_absolute():
            return f"sqlite:///{Path(database).resolve()}"
        return url
    return parsed.render_as_string(hide_password=True)
