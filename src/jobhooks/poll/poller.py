"""The poller: one node at a time follows the platform's job history.

Each node with ``[poll] enabled`` runs a :class:`Poller`. The one holding the
lease (a row in ``poll_state``, renewed by every commit) polls every
``interval`` seconds; the others wait and take over when the lease runs out.
Failures back off exponentially (or wait as long as the platform's
``Retry-After`` asks, up to ten minutes) and are logged once per change of state.
A way of reading the history that the platform broke is avoided for
:data:`TRUST_AGAIN` seconds, then probed for again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from jobhooks.config.schema import PollSettings
from jobhooks.errors import CapabilityBroken, LeaseLost, PlatformBusy, PlatformError, StoreError
from jobhooks.platform.rest import PlatformApi
from jobhooks.poll.agents import AgentDirectory
from jobhooks.poll.catalog import JobTypeResolver, fetch_catalog
from jobhooks.poll.cycle import Plan, PollCycle
from jobhooks.poll.probe import Capabilities, probe
from jobhooks.poll.rows import Candidate
from jobhooks.poll.sinks import PollReport
from jobhooks.store.ports import PollerStore
from jobhooks.store.pull import Lease, Pruning, WriteOutcome, feed_of

__all__ = ["Poller", "PollerMetrics"]

logger = logging.getLogger("jobhooks.poll")

HOURLY = 3600.0
TRUST_AGAIN = 3600.0
"""Seconds a capability the platform broke (a stale or disordered page) is left unused;
then the probe may choose it again. One broken page (a caching proxy answering an old
page once) should not cost the better way of reading for the life of the process."""


_CAPABILITIES = {"id": "the JobHistoryId filter and sort", "date": "the OperationStart filter"}


class PollerMetrics:
    """Where the poller reports what it does (no-ops unless given callables)."""

    def __init__(
        self,
        rows: Callable[[int], None] | None = None,
        created: Callable[[str, int], None] | None = None,
        error: Callable[[str], None] | None = None,
    ) -> None:
        self.rows = rows or (lambda count: None)
        self.created = created or (lambda result, count: None)
        self.error = error or (lambda kind: None)


class Poller:
    """Follows one platform's job history and turns finished runs into completions."""

    def __init__(
        self,
        store: PollerStore,
        api: PlatformApi,
        *,
        url: str,
        settings: PollSettings,
        plan: Plan,
        job_type_names: Callable[[], Mapping[str, uuid.UUID]],
        node_id: str,
        retention_days: int = 30,
        metrics: PollerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.api = api
        self.url = url
        self.settings = settings
        self.feed = feed_of(url)
        self.owner = node_id
        """The lease names this process (its heartbeat row), so a restart takes it back."""
        self.retention_days = retention_days
        self.metrics = metrics or PollerMetrics()
        self.clock = clock
        self.agents = AgentDirectory(api, page_size=settings.page_size)
        self._dry_run = False
        self._synced: dict[str, uuid.UUID] = {}
        self.job_types = JobTypeResolver(job_type_names, self._catalog_on_miss)
        self.cycle = PollCycle(
            store,
            api,
            feed=self.feed,
            owner=self.owner,
            lease=settings.lease,
            page_size=settings.page_size,
            start=start.timestamp() if (start := settings.start_time()) else None,
            plan=plan,
            agents=self.agents,
            job_types=self.job_types,
            on_rows=self.metrics.rows,
            on_outcome=self._outcome,
            clock=clock,
        )
        self.caps: Capabilities | None = None
        self._distrusted: dict[str, float] = {}
        """Capabilities the platform broke, and when each may be tried again."""
        self.leader = False
        self.started = False
        self._stop = asyncio.Event()
        self._failures = 0
        self._failing: str | None = None
        self._failing_since: float | None = None
        self.last_error: str | None = None
        self.last_poll_at: float | None = None
        self.caught_up_at: float | None = None
        self._catalog_synced_at: float | None = None
        self._pruned_at = clock()
        self._holder: str | None = None

    # -- what others see ---------------------------------------------------------------

    def lag(self) -> float | None:
        """Seconds since the start of the last poll that read to the end of the history."""
        if self.caught_up_at is None:
            return None
        return max(0.0, self.clock() - self.caught_up_at)

    def status(self) -> dict[str, Any]:
        """The poller's state for ``/readyz`` (JSON-ready)."""
        role = "starting" if not self.started else "polling" if self.leader else "standby"
        return {
            "role": role,
            "state": "failing" if self._failing else ("ok" if self.caught_up_at else "starting"),
            "mode": self.caps.mode if self.caps else None,
            "lag_seconds": None if self.lag() is None else round(self.lag() or 0.0, 3),
            "caught_up_at": self.caught_up_at,
            "last_poll_at": self.last_poll_at,
            "error": self.last_error if self._failing else None,
            "error_kind": self._failing,
            "failing_since": self._failing_since,
            "polled_by": self._holder if not self.leader else self.owner,
        }

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until :meth:`stop`; never raises (failures are logged and retried)."""
        self.started = True
        try:
            while not self._stop.is_set():
                delay = await self._step()
                await self._wait(delay)
        finally:
            if self.leader:
                with contextlib.suppress(Exception):
                    await self.release()

    async def stop(self) -> None:
        """Stop after the current page, and give the lease up."""
        self._stop.set()

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, renewing the lease meanwhile when polling."""
        deadline = self.clock() + delay
        while not self._stop.is_set():
            left = deadline - self.clock()
            if left <= 0:
                return
            chunk = min(left, self.settings.lease / 3) if self.leader else left
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), chunk)
            if self.leader and not self._stop.is_set() and deadline - self.clock() > 0:
                try:
                    if not await self.acquire():
                        self._lost()
                        return
                except StoreError:
                    return

    async def _step(self) -> float:
        """One turn of the loop; returns how long to wait before the next."""
        interval = self.settings.interval
        standby = min(interval, self.settings.lease / 3)
        if not self.leader:
            try:
                acquired = await self.acquire()
            except StoreError as exc:
                return self._failed("store", str(exc))
            if not acquired:
                return standby
            logger.info(
                "this node now polls the job history of %s (every %g s)", self.url, interval
            )
        began = self.clock()
        try:
            await self._maintain()
            await self.poll_once()
        except LeaseLost:
            self._lost()
            return 0.0
        except CapabilityBroken as exc:
            self._distrusted[exc.capability] = self.clock() + TRUST_AGAIN
            self.caps = None
            self.metrics.error("bad_response")
            logger.warning(
                "%s; reading the history another way for the next %.0f minutes",
                exc,
                TRUST_AGAIN / 60,
            )
            return 0.0
        except PlatformBusy as exc:
            return self._failed(exc.kind, str(exc), exc.retry_after)
        except PlatformError as exc:
            return self._failed(exc.kind, str(exc))
        except StoreError as exc:
            return self._failed("store", str(exc))
        except Exception as exc:
            if self._failing != "internal":
                logger.exception("the poller failed unexpectedly; retrying with backoff")
            return self._failed("internal", f"{type(exc).__name__}: {exc}")
        self._recovered()
        return max(0.0, interval - (self.clock() - began))

    def _lost(self) -> None:
        if self.leader:
            logger.warning("another node took over polling the job history; this node waits")
        self.leader = False

    def _failed(self, kind: str, message: str, retry_after: float | None = None) -> float:
        """Record a failed poll; returns the wait before the next: the backoff, or what
        the platform's Retry-After asked (already bounded) when that is longer."""
        self.metrics.error(kind)
        self._failures += 1
        self.last_error = message
        base = min(1.0, self.settings.interval)
        ceiling = max(self.settings.interval, 60.0)
        backoff: float = min(ceiling, base * 2.0 ** min(self._failures - 1, 30))
        delay = backoff * random.uniform(0.9, 1.1)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        if self._failing != kind:
            if self._failing is None:
                self._failing_since = self.clock()
            self._failing = kind
            how = (
                f"retrying in {delay:.0f} s, as the platform asked"
                if retry_after is not None and delay == retry_after
                else "retrying with backoff"
            )
            logger.error("cannot poll the platform's job history: %s (%s)", message, how)
        else:
            logger.debug("poll failed again (%d in a row): %s", self._failures, message)
        return delay

    def _recovered(self) -> None:
        if self._failing is not None:
            since = self.clock() - (self._failing_since or self.clock())
            logger.info(
                "the platform's job history is readable again (after %d failed polls in %.0f s)",
                self._failures,
                since,
            )
        self._failing = None
        self._failing_since = None
        self._failures = 0

    async def _maintain(self) -> None:
        """Hourly: sync the job type catalog, forget old rows."""
        now = self.clock()
        if self._catalog_synced_at is None or now - self._catalog_synced_at >= HOURLY:
            self._catalog_synced_at = now
            try:
                await self.sync_catalog()
            except PlatformError as exc:
                self.metrics.error(exc.kind)
                logger.warning("the job type catalog was not synced: %s", exc)
        if now - self._pruned_at >= HOURLY:
            self._pruned_at = now
            cutoff = now - self.retention_days * 86_400.0
            await self.store.pull.prune(Pruning(self.feed, self.owner, self.settings.lease, cutoff))

    # -- lease ---------------------------------------------------------------------------

    async def acquire(self) -> bool:
        """Take (or renew) the lease; False while another node holds it."""
        dead = () if self.leader else tuple(await self.store.dead_nodes())
        lease = Lease(self.feed, self.url, self.owner, self.settings.lease, dead)
        acquired = await self.store.pull.acquire(lease)
        if not acquired:
            state = await self.store.pull.state(self.feed)
            self._holder = state.owner if state is not None else None
            if state is not None:
                self.caught_up_at = state.caught_up_at
        self.leader = acquired
        return acquired

    async def release(self) -> None:
        """Give the lease up so another node may poll at once."""
        await self.store.pull.release(self.feed, self.owner)
        self.leader = False

    # -- polling -------------------------------------------------------------------------

    async def capabilities(self) -> Capabilities:
        """What the platform supports (probed once, again after a surprise, and again
        when a capability it broke may be tried again)."""
        now = self.clock()
        distrusted = {c for c, until in self._distrusted.items() if until > now}
        expired = sorted(set(self._distrusted) - distrusted)
        if expired:
            self.caps = None
        if self.caps is None:
            caps = await probe(self.api, need_dates="id" in distrusted)
            if "id" in distrusted:
                caps.id_filter = caps.id_sort = caps.id_sort_desc = False
            if "date" in distrusted:
                caps.date_format = None
            for capability in expired:
                del self._distrusted[capability]
            self.caps = caps
            if expired:
                logger.info(
                    "probed %s again, %.0f minutes after it broke %s: its job history is "
                    "now read in %s",
                    self.url,
                    TRUST_AGAIN / 60,
                    " and ".join(_CAPABILITIES.get(c, c) for c in expired),
                    caps.describe(),
                )
            else:
                logger.info("the job history of %s is read in %s", self.url, caps.describe())
            if caps.mode == "scan":
                logger.warning(
                    "the platform filters its job history on neither JobHistoryId nor "
                    "OperationStart: every poll reads the whole history"
                )
        return self.caps

    async def poll_once(self, *, dry_run: bool = False) -> PollReport:
        """Read the history from the stored position to its end (see :class:`PollCycle`)."""
        caps = await self.capabilities()
        began = self.clock()
        self.last_poll_at = began
        self._dry_run = dry_run
        report = await self.cycle.run(caps, dry_run=dry_run)
        if not dry_run:
            self.caught_up_at = began
        return report

    async def sync_catalog(self) -> int:
        """Read the job type catalog from the platform and store it (a dry run keeps it in
        memory only); returns how many job types it has."""
        entries = await fetch_catalog(self.api, self.settings.page_size)
        if not self._dry_run:
            await self.store.pull.save_catalog([(e.name, e.id) for e in entries])
        self._synced = {entry.name: entry.id for entry in entries}
        self._catalog_synced_at = self.clock()
        await self.job_types.reload()
        return len(entries)

    async def _catalog_on_miss(self) -> Mapping[str, uuid.UUID]:
        """The catalog, synced from the platform first unless that happened a minute ago."""
        synced_at = self._catalog_synced_at
        if synced_at is None or self.clock() - synced_at >= 60.0:
            self._catalog_synced_at = self.clock()
            try:
                entries = await fetch_catalog(self.api, self.settings.page_size)
            except PlatformError as exc:
                self.metrics.error(exc.kind)
                logger.warning("the job type catalog was not synced: %s", exc)
            else:
                if not self._dry_run:
                    await self.store.pull.save_catalog([(e.name, e.id) for e in entries])
                self._synced = {entry.name: entry.id for entry in entries}
        stored = await self.store.pull.catalog()
        return {**stored, **self._synced}

    def _outcome(self, outcome: WriteOutcome) -> None:
        for candidate, _completion_id, _count in outcome.created:
            if isinstance(candidate, Candidate) and candidate.row is not None:
                self.metrics.created(candidate.row.result.display, 1)
        for _candidate in outcome.bad:
            self.metrics.error("malformed_row")
