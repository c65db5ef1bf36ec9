"""The configuration a running process uses, swapped whole on reload."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobhooks.config.schema import JobhooksConfig
from jobhooks.errors import ConfigError
from jobhooks.registry import LoadedConfig, Registry, load

__all__ = ["LiveConfig", "ReloadStatus"]

logger = logging.getLogger("jobhooks.config")


@dataclass(frozen=True)
class ReloadStatus:
    """The last attempt to (re)load the configuration: when, and applied or refused why."""

    at: float
    applied: bool
    problems: tuple[str, ...] = ()


class LiveConfig:
    """Holds the current configuration and registry; :meth:`reload` swaps both at once."""

    def __init__(self, loaded: LoadedConfig, path: Path | None) -> None:
        self._loaded = loaded
        self.path = path
        self.last_reload = ReloadStatus(time.time(), True)

    @property
    def config(self) -> JobhooksConfig:
        """The configuration in force."""
        return self._loaded.config

    @property
    def registry(self) -> Registry:
        """The registry in force (an immutable snapshot)."""
        return self._loaded.registry

    def reload(self, catalog: Mapping[str, uuid.UUID] | None = None) -> ReloadStatus:
        """Read the file again; apply it if valid, otherwise keep the current one.

        ``catalog`` names job types beyond ``[job_types]`` (those synced or seen).
        Only the handlers and job type names change on reload; ``[server]``
        settings (listen address, database) take a restart.
        """
        if self.path is None:
            status = ReloadStatus(
                time.time(), False, ("running the built-in default; no file to reload",)
            )
        else:
            try:
                self._loaded = load(self.path, catalog)
            except ConfigError as exc:
                status = ReloadStatus(time.time(), False, exc.problems)
                logger.error("reload refused, keeping the running configuration: %s", exc)
            else:
                status = ReloadStatus(time.time(), True)
                logger.info("configuration reloaded: %d handlers", len(self.registry))
        self.last_reload = status
        return status
