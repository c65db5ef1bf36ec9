"""One running jobhooks process: the store, the live configuration, intake, the worker, the
poller, metrics and the platform's clients, wired together."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from jobhooks.config.defaults import resolve_database
from jobhooks.dispatch.wakeup import PostgresWakeup
from jobhooks.dispatch.worker import Worker
from jobhooks.errors import StoreError
from jobhooks.intake import Intake, LeasePolicy, RunPlanner
from jobhooks.metrics import Metrics
from jobhooks.platform.client import build_clients
from jobhooks.poll import Poller
from jobhooks.poll.wiring import build_poller
from jobhooks.registry import LoadedConfig
from jobhooks.registry.live import LiveConfig, ReloadStatus
from jobhooks.service.retention import keep_for
from jobhooks.service.tokens import TokenCache
from jobhooks.store import Store
from jobhooks.store.dialect import RELOAD_CHANNEL, RUNS_CHANNEL
from jobhooks.store.engine import is_sqlite
from jobhooks.store.nodes import NodeIdentity

__all__ = ["SLOW_RELOAD", "STALL_FLOOR", "YOUNG_GENERATION", "Runtime"]

logger = logging.getLogger("jobhooks")
T = TypeVar("T")


@contextlib.contextmanager
def _reload_failure_logged() -> Iterator[None]:
    """For a reload nobody waits on (a signal, another node's announcement): what stops it
    is logged, and the running configuration stays."""
    try:
        yield
    except StoreError as exc:
        logger.error("reload failed, keeping the running configuration: %s", exc)
    except Exception:
        logger.exception("reload failed, keeping the running configuration")


def _in_thread(function: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """``function(*args)`` in a thread of its own, a daemon: a reload whose handler's
    setup() never returns must not hold the process at exit, as the event loop's executor
    would (``asyncio.run`` and the interpreter wait for its threads: ``serve`` never
    ended on SIGTERM). The future is settled when the thread ends, if the loop still runs."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = context.run(function, *args), None
        except BaseException as exc:  # settled on the loop, like asyncio.to_thread's
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="jobhooks-reload", daemon=True).start()
    return future


STALL_FLOOR = 5.0
"""Seconds the event loop may stall before the heartbeat stops, whatever ``[server] lease``."""
SLOW_RELOAD = 10.0
"""Seconds a reload may read the configuration before a warning says it has not ended."""
YOUNG_GENERATION = 20_000
"""Objects allocated (net) before the cyclic collector looks at the young ones."""


class Runtime:
    """Everything one process runs; the web app and the CLI drive it.

    ``store`` is the database to serve from (opened on ``loaded``'s
    ``[server] database`` when not given); ``with_worker`` runs handlers here.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        config_path: Path | None = None,
        *,
        with_worker: bool = True,
        store: Store | None = None,
        migrate: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config = loaded.config
        server = config.server
        self.database = store.url if store else resolve_database(server.database, config_path)
        self.clock = clock
        self.leases = LeasePolicy(server.lease)
        self.node = NodeIdentity.of_this_process()
        """This process, as its heartbeat row names it (the worker's and poller's id)."""
        self.store = store or Store(
            self.database, default_lease=self.leases.default, migrate=migrate, clock=clock
        )
        self.live = LiveConfig(loaded, config_path)
        self.metrics = Metrics(self.store.reads.backlog)
        self.metrics.watch_registrations(self._registration_problems, self.store.reads.held_runs)
        writer = self.store.writer
        self.metrics.watch_store(lambda: (writer.batches, writer.items))
        self.tokens = TokenCache(self.store.tokens)
        self.clients = build_clients(config.platform)
        self.intake = Intake(self.store, lambda: self.live.registry, RunPlanner(self.leases))
        self.worker: Worker | None = None
        if with_worker:
            self.worker = Worker(
                self.store,
                lambda: self.live.registry,
                self.clients,
                self.leases,
                concurrency=server.concurrency,
                threads=server.threads,
                metrics=self.metrics,
                worker_id=self.node.id,
            )
            self.store.set_local_worker(self.worker)
        self.poller: Poller | None = None
        """Follows the platform's job history when ``[poll] enabled`` (one node at a time)."""
        if config.poll.enabled:
            self.poller = build_poller(
                self.store,
                self.clients,
                config,
                self.intake.plan,
                node_id=self.node.id,
                metrics=self.metrics,
                job_type_names=lambda: self.live.config.job_types,
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._collector: tuple[int, int, int] | None = None
        """The collector's thresholds before :meth:`start`, put back by :meth:`stop`."""
        self._wakeup: PostgresWakeup | None = None
        self._tick = time.monotonic()
        self._reloading = asyncio.Lock()
        self._reading: asyncio.Future[ReloadStatus] | None = None
        self._reading_since = 0.0
        """The reload reading in its thread, or the last one (see :meth:`_read_again`)."""
        self._waiting_reloads: dict[str, asyncio.Task[None]] = {}
        """Background reloads that have not begun to read, by what asked for them."""
        self.handle_sighup = False
        """Reload the configuration on SIGHUP (set by the CLI for the main process)."""

    async def reload(self) -> ReloadStatus:
        """Reload the configuration file; the running one stays if the new one is invalid.

        Job type names resolve against the stored catalog. On PostgreSQL an
        applied reload is announced, and every other node reloads its own
        configuration file too.
        """
        status = await self._read_again()
        if status.applied:
            await self.release_held()
            if self._wakeup is not None:
                await self.store.announce(RELOAD_CHANNEL, self.node.id)
        return status

    async def _read_again(self) -> ReloadStatus:
        """Read the configuration file again, off the event loop: a reload imports handler
        modules and runs every handler's ``setup()``, which may take long or never return,
        and check-ins and runs go on meanwhile with the running configuration. One reload
        at a time; one still reading after :data:`SLOW_RELOAD` seconds is logged, and
        the reloads asked for after that are refused at once (its handler's import or
        setup() may never return: they would wait for ever) until it ends."""
        if self._reading is not None and not self._reading.done():
            since = time.monotonic() - self._reading_since
            if since >= SLOW_RELOAD:
                problem = (
                    f"a reload has been reading the configuration for {since:.0f} s (a "
                    "handler's import or setup() has not returned), so this one is refused; "
                    "the running configuration stays; if it never ends, restart jobhooks"
                )
                logger.error("reload refused: %s", problem)
                return ReloadStatus(time.time(), False, (problem,))
        async with self._reloading:
            if self._reading is not None and not self._reading.done():
                # A reload whose waiter was cancelled still reads: this one waits for it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._reading)
            self._begin_reading()
            catalog = await self.store.pull.catalog()
            reading = self._reading = _in_thread(self.live.reload, catalog)
            self._reading_since = time.monotonic()
            done, _ = await asyncio.wait({reading}, timeout=SLOW_RELOAD)
            if not done:
                logger.warning(
                    "the reload has been reading the configuration for %g s: a handler's "
                    "import or setup() has not returned; the running configuration serves "
                    "meanwhile, and later reloads are refused until it ends",
                    SLOW_RELOAD,
                )
            return await asyncio.shield(reading)

    async def release_held(self) -> int:
        """Let the held runs of every valid registration run (those made while it was
        quarantined, on this node or another); returns how many. The digests collecting
        close by each registration's group_wait as it is now, if that is sooner."""
        registry = self.live.registry
        try:
            count = await self.store.release_held(
                [(handler.name, handler.policy.max_attempts) for handler in registry]
            )
        except StoreError as exc:
            logger.error("the held runs of valid registrations could not be released: %s", exc)
            return 0
        if count:
            logger.info("%d held run(s) released: their registrations are valid now", count)
            self.poke_worker()
        waits = [(h.name, h.grouping.wait) for h in registry if h.grouping is not None]
        try:
            shortened = await self.store.shorten_digests(waits)
        except StoreError as exc:
            logger.error("digests could not be given a shorter group_wait: %s", exc)
            return count
        if shortened:
            logger.info("%d collecting digest(s) close sooner: group_wait is shorter", shortened)
            self.poke_worker()
        return count

    def _reload_in_background(self) -> None:
        self._queue_reload("SIGHUP", self.reload)

    def _reload_announced(self, origin: str) -> None:
        if origin != self.node.id:
            logger.info("another node reloaded its configuration; reloading this one")
            self._queue_reload("another node", self._catalog_reload)

    async def _catalog_reload(self) -> ReloadStatus:
        status = await self._read_again()
        if status.applied:
            await self.release_held()
        return status

    def _queue_reload(self, asker: str, reload: Callable[[], Awaitable[ReloadStatus]]) -> None:
        """Reload in the background, unless a reload ``asker`` asked for before still waits
        to begin reading: that one reads the file as it will be then, so this request is
        merged into it (a storm of SIGHUPs reloads twice at most, not once per signal)."""
        if asker in self._waiting_reloads:
            logger.info("a reload asked for by %s already waits to read; merged into it", asker)
            return
        task = asyncio.create_task(self._reload_logged(asker, reload), name="jobhooks-reload")
        self._waiting_reloads[asker] = task
        self._tasks = [other for other in self._tasks if not other.done()]
        self._tasks.append(task)

    async def _reload_logged(
        self, asker: str, reload: Callable[[], Awaitable[ReloadStatus]]
    ) -> None:
        try:
            with _reload_failure_logged():
                await reload()
        finally:
            self._begin_reading()  # or refused: later requests are not merged into it

    def _begin_reading(self) -> None:
        """The current task begins to read: requests after this need a reload of their own."""
        current = asyncio.current_task()
        for asker, task in list(self._waiting_reloads.items()):
            if task is current:
                del self._waiting_reloads[asker]

    def _registration_problems(self) -> list[tuple[str, str, int]]:
        return [
            (entry.name, "kept" if entry.kept else "quarantined", len(entry.problems))
            for entry in self.live.registry.problems
        ]

    def poke_worker(self) -> None:
        """Make the local worker look for due runs now."""
        if self.worker is not None:
            self.worker.poke()

    async def start(self) -> None:
        """Start the heartbeat, the worker, the poller and the retention loop (and listen for
        SIGHUP if asked)."""
        if self.handle_sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload_in_background)
        # Everything loaded so far lives as long as the process: keep it out of
        # the cyclic collector's full passes, which otherwise stall the event
        # loop (and every check-in) for milliseconds at a time.
        gc.collect()
        gc.freeze()
        # A request in flight holds a few dozen objects, so their number swings by
        # thousands under load; with the default young generation (700) the collector
        # ran hundreds of times a second to find nothing (reference counts free them),
        # 2-3 % of a check-in's CPU, each pass on the loop.
        self._collector = gc.get_threshold()
        gc.set_threshold(YOUNG_GENERATION, *self._collector[1:])
        self._tasks.append(asyncio.create_task(self._ticking(), name="jobhooks-tick"))
        # Registered before the worker takes runs: what it holds names a live process.
        await self.store.start_heartbeat(self.node, self._making_progress)
        await self.release_held()
        if self.worker is not None:
            self._tasks.append(asyncio.create_task(self.worker.run(), name="jobhooks-worker"))
        retention = keep_for(self.store, lambda: self.live.config.server.retention_days, self.clock)
        self._tasks.append(asyncio.create_task(retention, name="jobhooks-retention"))
        if self.poller is not None:
            self._tasks.append(asyncio.create_task(self.poller.run(), name="jobhooks-poller"))
        if not is_sqlite(self.database):
            handlers: dict[str, Callable[[str], None]] = {RELOAD_CHANNEL: self._reload_announced}
            if self.worker is not None:
                handlers[RUNS_CHANNEL] = lambda _payload: self.poke_worker()
            self._wakeup = PostgresWakeup(self.database, handlers)
            self._wakeup.start()

    @property
    def listening(self) -> bool:
        """True while this PostgreSQL node listens for wake-ups from the others."""
        return self._wakeup is not None and self._wakeup.connected

    async def stop(self) -> None:
        """Stop taking work, let running handlers finish briefly, close the store."""
        if self.worker is not None:
            await self.worker.stop()
        if self._wakeup is not None:
            self._wakeup.stop()
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
        if self._collector is not None:
            gc.set_threshold(*self._collector)

    async def _ticking(self) -> None:
        while True:
            self._tick = time.monotonic()
            await asyncio.sleep(1.0)

    def _making_progress(self) -> bool:
        # Called from the store's writer thread: a process whose event loop has not run
        # for a whole lease stops its heartbeat, so its runs go to another worker.
        return time.monotonic() - self._tick < max(self.leases.grace, STALL_FLOOR)
