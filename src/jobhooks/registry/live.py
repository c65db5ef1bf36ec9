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
from jobhooks.registry import LoadedConfig, Registry, load_for_serving

__all__ = ["LiveConfig", "ReloadStatus"]

logger = logging.getLogger("jobhooks.config")


@dataclass(frozen=True)
class ReloadStatus:
    """The last attempt to (re)load the configuration: when, and applied or refused why.

    ``problems`` lists why it was refused, or (applied) the problems of the
    registrations it quarantined or kept at their last good version.
    """

    at: float
    applied: bool
    problems: tuple[str, ...] = ()


def _problems_of(registry: Registry) -> tuple[str, ...]:
    return tuple(problem for entry in registry.problems for problem in entry.problems)


class LiveConfig:
    """Holds the current configuration and registry; :meth:`reload` swaps both at once."""

    def __init__(self, loaded: LoadedConfig, path: Path | None) -> None:
        self._loaded = loaded
        self.path = path
        self.last_reload = ReloadStatus(time.time(), True, _problems_of(loaded.registry))
        _log_problems(loaded.registry)

    @property
    def config(self) -> JobhooksConfig:
        """The configuration in force."""
        return self._loaded.config

    @property
    def registry(self) -> Registry:
        """The registry in force (an immutable snapshot)."""
        return self._loaded.registry

    def reload(self, catalog: Mapping[str, uuid.UUID] | None = None) -> ReloadStatus:
        """Read the file again; apply it unless it cannot be used at all.

        ``catalog`` names job types beyond ``[job_types]`` (those synced or seen).
        A registration with problems keeps its running version if it has one,
        and is quarantined if it is new; a file that cannot be used (not TOML,
        a problem outside ``[[handlers]]``) is refused whole and the running
        configuration stays. Only the handlers and job type names change on
        reload; ``[server]`` settings (listen address, database) take a restart.
        """
        if self.path is None:
            status = ReloadStatus(
                time.time(), False, ("running the built-in default; no file to reload",)
            )
        else:
            try:
                self._loaded = load_for_serving(self.path, catalog, previous=self.registry)
            except ConfigError as exc:
                status = ReloadStatus(time.time(), False, exc.problems)
                # One line, its problems side by side: a log line holds no line breaks.
                logger.error(
                    "reload refused, keeping the running configuration: %s",
                    "; ".join(exc.problems),
                )
            else:
                status = ReloadStatus(time.time(), True, _problems_of(self.registry))
                logger.info("configuration reloaded: %d handlers", len(self.registry))
                _log_problems(self.registry)
        self.last_reload = status
        return status


def _log_problems(registry: Registry) -> None:
    for entry in registry.problems:
        state = (
            "keeps running its last good version"
            if entry.kept
            else "is quarantined"
            + (": its completions are held until it is fixed" if entry.holds else "")
        )
        logger.error("registration %r %s (%s)", entry.name, state, "; ".join(entry.problems))
