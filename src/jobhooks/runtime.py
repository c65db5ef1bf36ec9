"""One running jobhooks process: store, live configuration, worker, metrics, clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobhooks.api.auth import TokenCache
from jobhooks.config.schema import HandlerRegistration, JobhooksConfig, ServerSettings
from jobhooks.dispatch.wakeup import PostgresWakeup
from jobhooks.dispatch.worker import Worker
from jobhooks.errors import ConfigError
from jobhooks.live_config import LiveConfig, ReloadStatus
from jobhooks.metrics import Metrics
from jobhooks.platform.client import build_clients
from jobhooks.poll import Poller
from jobhooks.poll.wiring import build_poller
from jobhooks.registry import LoadedConfig, Registry, build_registry, load
from jobhooks.store import Store
from jobhooks.store.engine import is_sqlite, sqlite_path
from jobhooks.store.facade import RELOAD_CHANNEL, RUNS_CHANNEL
from jobhooks.store.nodes import NodeIdentity

__all__ = ["DEFAULT_DATA_DIR", "Runtime", "default_config", "load_for_serving", "resolve_database"]

logger = logging.getLogger("jobhooks")

DEFAULT_DATA_DIR = Path("jobhooks-data")
RETENTION_EVERY = 3600.0
STALL_FLOOR = 5.0
"""Seconds the event loop may stall before the heartbeat stops, whatever ``[server] lease``."""


def default_config(data_dir: Path = DEFAULT_DATA_DIR) -> LoadedConfig:
    """The built-in default: SQLite in ``data_dir`` and the ``log`` handler for every job."""
    config = JobhooksConfig(
        server=ServerSettings(database=f"sqlite:///{data_dir / 'jobhooks.db'}"),
        handlers=[HandlerRegistration(name="log", type="log", job_types="*")],
    )
    registry, problems = build_registry(config)
    if problems:
        raise ConfigError(problems, source="built-in default")
    return LoadedConfig(config, registry)


def resolve_database(url: str, config_path: Path | None) -> str:
    """A relative SQLite path is relative to the configuration file's folder."""
    if not is_sqlite(url) or config_path is None:
        return url
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    return f"sqlite:///{(config_path.parent / path).resolve()}"


def load_for_serving(
    path: Path | None, catalog: Mapping[str, uuid.UUID] | None = None
) -> LoadedConfig:
    """The configuration at ``path``, or the built-in default when ``path`` is None;
    ``catalog`` names job types beyond ``[job_types]`` (those synced or seen)."""
    return default_config() if path is None else load(path, catalog)


class Runtime:
    """Everything one process runs; the API app and the CLI drive it."""

    def __init__(
        self,
        loaded: LoadedConfig,
        config_path: Path | None = None,
        *,
        with_worker: bool = True,
        database: str | None = None,
        migrate: bool | None = None,
    ) -> None:
        config = loaded.config
        server = config.server
        self.database = database or resolve_database(server.database, config_path)
        self.lease_grace = server.lease
        self.node = NodeIdentity.of_this_process()
        """This process, as its heartbeat row names it (the worker's and poller's id)."""
        self.store = Store(self.database, default_lease=server.lease + 30.0, migrate=migrate)
        self.live = LiveConfig(loaded, config_path, catalog=self._catalog)
        self.metrics = Metrics(self.store.backlog)
        self.tokens = TokenCache(self.store.engine)
        self.clients = build_clients(config.platform)
        self.worker: Worker | None = None
        if with_worker:
            self.worker = Worker(
                self.store,
                lambda: self.live.registry,
                self.clients,
                concurrency=server.concurrency,
                threads=server.threads,
                lease_grace=server.lease,
                metrics=self.metrics,
                worker_id=self.node.id,
            )
            self.store.set_local_worker(self.worker)
        self._planned: tuple[Registry | None, dict[Any, Any]] = (None, {})
        self._tasks: list[asyncio.Task[Any]] = []
        self.wakeup: PostgresWakeup | None = None
        self.node_id = self.node.id
        self._tick = time.monotonic()
        self.poller: Poller | None = None
        """Follows the platform's job history when ``[poll] enabled`` (one node at a time)."""
        if config.poll.enabled:
            self.poller = build_poller(
                self.store,
                self.clients,
                config,
                lambda: self.live.registry,
                lease_grace=server.lease,
                node_id=self.node_id,
                metrics=self.metrics,
                job_type_names=lambda: self.live.config.job_types,
            )
        self.handle_sighup = False
        """Reload the configuration on SIGHUP (set by the CLI for the main process)."""

    def _catalog(self) -> dict[str, uuid.UUID]:
        from jobhooks.store.queries import list_job_types

        return {row["name"]: uuid.UUID(row["id"]) for row in list_job_types(self.store.engine)}

    def planned_cache(self, registry: Registry) -> dict[Any, Any]:
        """Per registry snapshot: the runs to create for each job type id."""
        cached_for, cache = self._planned
        if cached_for is not registry:
            cache = {}
            self._planned = (registry, cache)
        return cache

    def reload(self) -> ReloadStatus:
        """Reload the configuration file; the running one stays if the new one is invalid.

        On PostgreSQL an applied reload is announced, and every other node
        reloads its own configuration file too.
        """
        status = self.live.reload()
        if status.applied and self.wakeup is not None:
            task = asyncio.get_running_loop().create_task(
                self.store.announce(RELOAD_CHANNEL, self.node_id)
            )
            self._tasks.append(task)
        return status

    def _reload_announced(self, origin: str) -> None:
        if origin != self.node_id:
            logger.info("another node reloaded its configuration; reloading this one")
            self.live.reload()

    def poke_worker(self) -> None:
        """Make the local worker look for due runs now."""
        if self.worker is not None:
            self.worker.poke()

    async def start(self) -> None:
        """Start the worker and the retention loop (and listen for SIGHUP if asked)."""
        if self.handle_sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        # Everything loaded so far lives as long as the process: keep it out of
        # the cyclic collector's full passes, which otherwise stall the event
        # loop (and every check-in) for milliseconds at a time.
        gc.collect()
        gc.freeze()
        self._tasks.append(asyncio.create_task(self._ticking(), name="jobhooks-tick"))
        # Registered before the worker takes runs: what it holds names a live process.
        await self.store.start_heartbeat(self.node, self._making_progress)
        if self.worker is not None:
            self._tasks.append(asyncio.create_task(self.worker.run(), name="jobhooks-worker"))
        self._tasks.append(asyncio.create_task(self._retention(), name="jobhooks-retention"))
        if self.poller is not None:
            self._tasks.append(asyncio.create_task(self.poller.run(), name="jobhooks-poller"))
        if not is_sqlite(self.database):
            handlers: dict[str, Callable[[str], None]] = {RELOAD_CHANNEL: self._reload_announced}
            if self.worker is not None:
                handlers[RUNS_CHANNEL] = lambda _payload: self.poke_worker()
            self.wakeup = PostgresWakeup(self.database, handlers)
            self.wakeup.start()

    async def stop(self) -> None:
        """Stop taking work, let running handlers finish briefly, close the store."""
        if self.worker is not None:
            await self.worker.stop()
        if self.wakeup is not None:
            self.wakeup.stop()
        if self.poller is not None:
            # Let the poller finish its page and give its lease up to another node.
            await self.poller.stop()
            polling = [task for task in self._tasks if task.get_name() == "jobhooks-poller"]
            if polling:
                await asyncio.wait(polling, timeout=5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.clients.aclose()
        self.store.close()

    async def _ticking(self) -> None:
        while True:
            self._tick = time.monotonic()
            await asyncio.sleep(1.0)

    def _making_progress(self) -> bool:
        # Called from the store's writer thread: a process whose event loop has not run
        # for a whole lease stops its heartbeat, so its runs go to another worker.
        return time.monotonic() - self._tick < max(self.lease_grace, STALL_FLOOR)

    async def _retention(self) -> None:
        await asyncio.sleep(60)
        while True:
            days = self.live.config.server.retention_days
            cutoff = time.time() - days * 86400
            try:
                total = 0
                while (count := await self.store.purge(cutoff)) > 0:
                    total += count
                if total:
                    logger.info("retention: deleted %d completions older than %d days", total, days)
            except Exception:
                logger.exception("retention failed; trying again later")
            await asyncio.sleep(RETENTION_EVERY)
