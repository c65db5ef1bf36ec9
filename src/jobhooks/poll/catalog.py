"""The job type catalog: names and GUIDs of one platform instance's job types.

Filled from ``GET /CertificateStoreTypes`` (each store type's ``ShortName`` plus
Inventory, Management, Discovery or Reenrollment names its job types) and
``GET /JobTypes/Custom`` (``JobTypeName`` and ``Id``), kept in the ``job_types``
table with origin ``synced`` beside the ones seen in completions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, inspect, select

from jobhooks.poll.api import CUSTOM_JOB_TYPES, STORE_TYPES, PlatformApi
from jobhooks.poll.rows import NIL
from jobhooks.sdk.enums import normalise_name
from jobhooks.store.dialect import upsert
from jobhooks.store.tables import job_types

__all__ = [
    "CatalogEntry",
    "JobTypeResolver",
    "fetch_catalog",
    "read_catalog",
    "save_catalog",
    "stored_catalog",
]

logger = logging.getLogger("jobhooks.poll")

STORE_JOB_TYPES = (
    ("Inventory", "InventoryJobType"),
    ("Management", "ManagementJobType"),
    ("Discovery", "DiscoveryJobType"),
    ("Reenrollment", "EnrollmentJobType"),
)
"""Job type name suffix and the store type field holding its GUID."""

_ORIGIN_RANK = {"config": 3, "synced": 2, "seen": 1}


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
        short = item["ShortName"]
        for suffix, field in STORE_JOB_TYPES:
            guid = _guid(item.get(field))
            if guid is not None:
                entries.append(CatalogEntry(short + suffix, guid, f"store type {short}"))
    for item in custom:
        if not isinstance(item, dict) or not isinstance(item.get("JobTypeName"), str):
            continue
        guid = _guid(item.get("Id"))
        if guid is not None:
            entries.append(CatalogEntry(item["JobTypeName"], guid, "custom job type"))
    return entries


async def fetch_catalog(api: PlatformApi, page_size: int = 500) -> list[CatalogEntry]:
    """Read the catalog from the platform."""
    store_types = await api.all_pages(STORE_TYPES, page_size)
    custom = await api.all_pages(CUSTOM_JOB_TYPES, page_size)
    return catalog_entries(store_types, custom)


def save_catalog(connection: Connection, entries: Sequence[CatalogEntry], now: float) -> int:
    """Upsert synced entries into ``job_types`` (a type seen before becomes synced)."""
    rows = {
        str(entry.id): {
            "id": str(entry.id),
            "name": entry.name,
            "origin": "synced",
            "first_seen": now,
        }
        for entry in entries
    }
    if rows:
        connection.execute(
            upsert(connection, job_types, "id", ["name", "origin"]), list(rows.values())
        )
    return len(rows)


def read_catalog(connection: Connection) -> dict[str, uuid.UUID]:
    """Names to GUIDs from ``job_types``; where a name has several, synced beats seen."""
    chosen: dict[str, tuple[int, uuid.UUID]] = {}
    for row in connection.execute(select(job_types.c.id, job_types.c.name, job_types.c.origin)):
        rank = _ORIGIN_RANK.get(row.origin, 0)
        try:
            guid = uuid.UUID(row.id)
        except ValueError:
            continue
        if row.name not in chosen or rank > chosen[row.name][0]:
            chosen[row.name] = (rank, guid)
    return {name: guid for name, (_rank, guid) in chosen.items()}


def stored_catalog(engine: Engine) -> dict[str, uuid.UUID]:
    """The catalog stored in a database (empty when it has no ``job_types`` table yet)."""
    if not inspect(engine).has_table(job_types.name):
        return {}
    with engine.connect() as connection:
        return read_catalog(connection)


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
        key = normalise_name(name)
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
