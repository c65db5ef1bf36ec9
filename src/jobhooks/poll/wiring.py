"""Build a :class:`Poller` from a configuration, for ``serve``, ``worker`` and ``poll``."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy.engine import make_url

from jobhooks.config.schema import JobhooksConfig
from jobhooks.errors import ConfigError, PlatformError, StoreError
from jobhooks.metrics import Metrics
from jobhooks.platform.client import PlatformClients, build_clients, describe_credential
from jobhooks.poll.api import PlatformApi
from jobhooks.poll.catalog import CatalogEntry, fetch_catalog, save_catalog, stored_catalog
from jobhooks.poll.poller import Poller, PollerMetrics
from jobhooks.registry.matching import Registry
from jobhooks.store.database import open_database
from jobhooks.store.engine import connect, is_sqlite, sqlite_path
from jobhooks.store.ports import PollerStore

__all__ = ["build_poller", "existing_catalog", "startup_catalog"]

logger = logging.getLogger("jobhooks.poll")

STARTUP_SYNC = 15.0
"""Seconds ``serve`` waits for the platform's catalog before starting with the stored one."""


def _metrics(metrics: Metrics) -> PollerMetrics:
    def created(result: str, count: int) -> None:
        metrics.poll_completions.labels(result).inc(count)
        metrics.completions.labels(result, "poll").inc(count)

    return PollerMetrics(
        rows=metrics.poll_rows.inc,
        created=created,
        error=lambda kind: metrics.poll_errors.labels(kind).inc(),
    )


def build_poller(
    store: PollerStore,
    clients: PlatformClients,
    config: JobhooksConfig,
    registry: Callable[[], Registry],
    *,
    lease_grace: float,
    node_id: str,
    metrics: Metrics | None = None,
    job_type_names: Callable[[], Mapping[str, uuid.UUID]] | None = None,
) -> Poller:
    """A poller for ``[platform]`` and ``[poll]``, reading through ``clients.async_client``;
    ``job_type_names`` gives the ``[job_types]`` in force (after reloads).

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
        registry=registry,
        lease_grace=lease_grace,
        job_type_names=job_type_names or (lambda: config.job_types),
        node_id=node_id,
        retention_days=config.server.retention_days,
        metrics=_metrics(metrics) if metrics is not None else None,
    )
    if metrics is not None:
        metrics.watch_poller(poller.lag, lambda: poller.leader)
    return poller


def startup_catalog(config: JobhooksConfig, database: str, *, sync: bool) -> dict[str, uuid.UUID]:
    """The job type catalog registrations may name, before the registry is built.

    With ``sync`` (``serve`` or ``worker`` with polling enabled) it is first
    synced from the platform; if the platform cannot be read, the stored one is
    used and a warning logged. A PostgreSQL schema that is behind gives an
    empty catalog (the server then refuses to start, naming ``db upgrade``).
    """
    try:
        engine = open_database(database, pool_size=1)
    except StoreError:
        return {}  # the server then refuses to start, saying why
    try:
        if sync and config.platform.url:
            try:
                entries = asyncio.run(_fetch(config))
            except (PlatformError, TimeoutError) as exc:
                logger.warning(
                    "the job type catalog was not synced from the platform (%s); "
                    "using the stored one",
                    exc or "timed out",
                )
            else:
                with engine.begin() as connection:
                    count = save_catalog(connection, entries, time.time())
                logger.info("synced %d job types from the platform", count)
        return stored_catalog(engine)
    finally:
        engine.dispose()


async def _fetch(config: JobhooksConfig) -> list[CatalogEntry]:
    clients = build_clients(config.platform)
    try:
        api = PlatformApi(clients.async_client, describe_credential(config.platform))
        return await asyncio.wait_for(fetch_catalog(api, config.poll.page_size), STARTUP_SYNC)
    finally:
        await clients.aclose()


def existing_catalog(database: str) -> dict[str, uuid.UUID] | None:
    """The catalog stored in ``database`` if it exists and can be read, else None (never
    creates or migrates anything: for ``validate``)."""
    if is_sqlite(database):
        path = sqlite_path(database)
        if path is None or not path.exists():
            return None
    else:
        # A server that does not answer must not hold `validate` up for minutes.
        database = (
            make_url(database)
            .update_query_dict({"connect_timeout": "3"})
            .render_as_string(hide_password=False)
        )
    engine = connect(database, pool_size=1)
    try:
        return stored_catalog(engine)
    except Exception as exc:
        logger.debug("no stored job type catalog in %s: %s", database, exc)
        return None
    finally:
        engine.dispose()
