"""Build a :class:`Poller` from a configuration, for ``serve``, ``worker`` and ``poll``."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping

from jobhooks.config.schema import JobhooksConfig
from jobhooks.errors import ConfigError, PlatformError
from jobhooks.metrics import Metrics
from jobhooks.platform.client import PlatformClients, build_clients, describe_credential
from jobhooks.platform.rest import PlatformApi
from jobhooks.poll.catalog import CatalogEntry, fetch_catalog
from jobhooks.poll.cycle import Plan
from jobhooks.poll.poller import Poller, PollerMetrics
from jobhooks.store.ports import PollerStore

__all__ = ["build_poller", "fetch_catalog_now"]

logger = logging.getLogger("jobhooks.poll")

STARTUP_SYNC = 15.0
"""Seconds ``serve`` waits for the platform's catalog before starting with the stored one."""


def _metrics(metrics: Metrics) -> PollerMetrics:
    def created(result: str, count: int) -> None:
        metrics.poll_completions.labels(result).inc(count)
        metrics.count_completions(result, "poll", count)

    return PollerMetrics(
        rows=metrics.poll_rows.inc,
        created=created,
        error=lambda kind: metrics.poll_errors.labels(kind).inc(),
    )


def build_poller(
    store: PollerStore,
    clients: PlatformClients,
    config: JobhooksConfig,
    plan: Plan,
    *,
    node_id: str,
    metrics: Metrics | None = None,
    job_type_names: Callable[[], Mapping[str, uuid.UUID]] | None = None,
    clock: Callable[[], float] = time.time,
) -> Poller:
    """A poller for ``[platform]`` and ``[poll]``, reading through ``clients.async_client``;
    ``plan`` gives the runs a completion of a job type starts (intake's planner), and
    ``job_type_names`` the ``[job_types]`` in force (after reloads).

    Raises :class:`ConfigError` when ``[platform] url`` is not set.
    """
    platform = config.platform
    if not platform.url:
        raise ConfigError(
            ["[poll]: polling needs the platform's API: set [platform] url and credentials"]
        )
    api = PlatformApi(clients.async_client, describe_credential(platform))
    poller = Poller(
        store,
        api,
        url=platform.url,
        settings=config.poll,
        plan=plan,
        job_type_names=job_type_names or (lambda: config.job_types),
        node_id=node_id,
        retention_days=config.server.retention_days,
        metrics=_metrics(metrics) if metrics is not None else None,
        clock=clock,
    )
    if metrics is not None:
        metrics.watch_poller(poller.lag, lambda: poller.leader)
    return poller


async def fetch_catalog_now(config: JobhooksConfig) -> list[CatalogEntry] | None:
    """The platform's job type catalog, read before a node starts (at most
    :data:`STARTUP_SYNC` seconds); None, with a warning, when it cannot be read (the
    stored one serves then)."""
    clients = build_clients(config.platform)
    try:
        api = PlatformApi(clients.async_client, describe_credential(config.platform))
        return await asyncio.wait_for(fetch_catalog(api, config.poll.page_size), STARTUP_SYNC)
    except (PlatformError, TimeoutError) as exc:
        logger.warning(
            "the job type catalog was not synced from the platform (%s); using the stored one",
            exc or "timed out",
        )
        return None
    finally:
        await clients.aclose()
