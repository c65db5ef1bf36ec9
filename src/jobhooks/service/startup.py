"""Opening what a ``serve``, ``worker`` or ``poll`` process runs on, from its configuration."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from jobhooks.config.defaults import default_config, resolve_database
from jobhooks.config.load import read_config
from jobhooks.config.schema import JobhooksConfig
from jobhooks.intake import LeasePolicy
from jobhooks.poll.wiring import fetch_catalog_now
from jobhooks.registry import LoadedConfig, load_for_serving
from jobhooks.service.runtime import Runtime
from jobhooks.store import Store

__all__ = ["open_runtime", "open_store", "serving_catalog", "settings"]


def settings(path: Path | None) -> JobhooksConfig:
    """The configuration's settings (registrations unchecked), or the built-in default.

    Raises :class:`ConfigError` when the file cannot be read or is not TOML.
    """
    if path is None:
        return default_config()
    config, _problems = read_config(path)
    return config


def open_store(path: Path | None, config: JobhooksConfig | None = None) -> Store:
    """The store of a configuration's ``[server] database`` (created and migrated when it is
    the embedded SQLite one). Raises :class:`~jobhooks.errors.StoreError` saying why not."""
    config = config or settings(path)
    leases = LeasePolicy(config.server.lease)
    return Store(resolve_database(config.server.database, path), default_lease=leases.default)


def open_runtime(
    path: Path | None, *, with_worker: bool, poll: bool | None = None, strict: bool = False
) -> Runtime:
    """The runtime of a configuration: its store opened, the platform's job type catalog
    synced first when it polls (``poll`` overrides ``[poll] enabled``), the registrations
    built with the names the catalog knows (those with problems quarantined).

    Raises :class:`ConfigError` when the file cannot be used at all (with ``strict``,
    when anything in it is wrong), listing the problems, or
    :class:`~jobhooks.errors.StoreError` when the database cannot be opened.
    """
    config = settings(path)
    if poll is not None and poll != config.poll.enabled:
        config = config.model_copy(
            update={"poll": config.poll.model_copy(update={"enabled": poll})}
        )
    store = open_store(path, config)
    try:
        catalog = asyncio.run(serving_catalog(store, config))
        loaded = load_for_serving(path, catalog, strict=strict)
        if poll is not None:
            loaded = LoadedConfig(
                loaded.config.model_copy(update={"poll": config.poll}), loaded.registry
            )
        return Runtime(loaded, path, with_worker=with_worker, store=store)
    except BaseException:
        store.close()
        raise


async def serving_catalog(store: Store, config: JobhooksConfig) -> dict[str, uuid.UUID]:
    """The job type names registrations may use: the platform's catalog is synced into
    ``store`` first when polling (the stored one serves if the platform cannot be read)."""
    if config.poll.enabled and config.platform.url:
        entries = await fetch_catalog_now(config)
        if entries is not None:
            await store.pull.save_catalog([(entry.name, entry.id) for entry in entries])
    return await store.pull.catalog()
