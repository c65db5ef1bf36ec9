"""The job type catalog: names and GUIDs of one platform instance's job types.

Filled from ``GET /CertificateStoreTypes`` (each store type's ``ShortName`` plus
Inventory, Management, Discovery or Reenrollment names its job types) and
``GET /JobTypes/Custom`` (``JobTypeName`` and ``Id``), stored by the store's catalog
(:mod:`jobhooks.store.catalog`) with origin ``synced`` beside the ones seen.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobhooks.platform.rest import CUSTOM_JOB_TYPES, STORE_TYPES, PlatformApi
from jobhooks.poll.rows import NIL, storable
from jobhooks.sdk.enums import normalise_name

__all__ = ["CatalogEntry", "JobTypeResolver", "catalog_entries", "fetch_catalog"]

logger = logging.getLogger("jobhooks.poll")

STORE_JOB_TYPES = (
    ("Inventory", "InventoryJobType"),
    ("Management", "ManagementJobType"),
    ("Discovery", "DiscoveryJobType"),
    ("Reenrollment", "EnrollmentJobType"),
)
"""Job type name suffix and the store type field holding its GUID."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A job type of the platform: its name, its GUID and where the name comes from."""

    name: str
    id: uuid.UUID
    source: str
    """``store type <ShortName>`` or ``custom job type``."""


def _guid(value: object) -> uuid.UUID | None:
    if not value:
        return None
    try:
        guid = uuid.UUID(str(value))
    except ValueError:
        return None
    return None if guid == NIL else guid


def catalog_entries(store_types: Iterable[Any], custom: Iterable[Any]) -> list[CatalogEntry]:
    """The entries described by the two endpoints' answers (items without a name or a
    GUID are left out)."""
    entries: list[CatalogEntry] = []
    for item in store_types:
        if not isinstance(item, dict) or not isinstance(item.get("ShortName"), str):
            continue
        short = storable(item["ShortName"])  # stored before serve starts: never refused
        for suffix, field in STORE_JOB_TYPES:
            guid = _guid(item.get(field))
            if guid is not None:
                entries.append(CatalogEntry(short + suffix, guid, f"store type {short}"))
    for item in custom:
        if not isinstance(item, dict) or not isinstance(item.get("JobTypeName"), str):
            continue
        guid = _guid(item.get("Id"))
        if guid is not None:
            entries.append(CatalogEntry(storable(item["JobTypeName"]), guid, "custom job type"))
    return entries


async def fetch_catalog(api: PlatformApi, page_size: int = 500) -> list[CatalogEntry]:
    """Read the catalog from the platform."""
    store_types = await api.all_pages(STORE_TYPES, page_size)
    custom = await api.all_pages(CUSTOM_JOB_TYPES, page_size)
    return catalog_entries(store_types, custom)


class JobTypeResolver:
    """Job type names (any spelling) to GUIDs: ``[job_types]`` (as currently loaded) first,
    then the catalog.

    A name not found makes it read the catalog again, at most every
    ``refresh_every`` seconds (``refresh`` may sync it from the platform first).
    """

    def __init__(
        self,
        configured: Callable[[], Mapping[str, uuid.UUID]],
        load: Callable[[], Awaitable[Mapping[str, uuid.UUID]]],
        *,
        refresh_every: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configured_source = configured
        self._configured_from: Mapping[str, uuid.UUID] | None = None
        self._configured: dict[str, uuid.UUID] = {}
        self._load = load
        self._refresh_every = refresh_every
        self._clock = clock
        self._known: dict[str, uuid.UUID] | None = None
        self._loaded_at = 0.0
        self._warned: set[str] = set()

    async def reload(self) -> None:
        """Read the catalog again now."""
        catalog = await self._load()
        self._known = {normalise_name(name): guid for name, guid in catalog.items()}
        self._loaded_at = self._clock()

    async def resolve(self, name: str) -> uuid.UUID:
        """The GUID of ``name``, or the nil GUID (logged once per name) if unknown."""
        key = normalise_name(storable(name))  # as the catalog's names were stored
        configured = self._configured_source()
        if configured is not self._configured_from:  # a reload changed [job_types]
            self._configured = {normalise_name(n): guid for n, guid in configured.items()}
            self._configured_from = configured
        if key in self._configured:
            return self._configured[key]
        stale = self._clock() - self._loaded_at >= self._refresh_every
        if self._known is None or (key not in self._known and stale):
            await self.reload()
        assert self._known is not None
        guid = self._known.get(key)
        if guid is not None:
            return guid
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(
                "job type %r is not in the catalog (run 'jobhooks job-types sync', or name it "
                "in [job_types]): its completions get the nil job type id and match only "
                'handlers registered for "*"',
                name,
            )
        return NIL
