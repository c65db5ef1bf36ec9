"""The job type catalog: names and GUIDs of one platform instance's job types.

A job type is learned three ways: ``seen`` in a completion (recorded at
check-in), ``synced`` from the platform's catalog (pull mode), or named in the
configuration's ``[job_types]`` (never stored: merged when read). Pages are
in name order, then GUID, compared by code point on either database, and a
cursor is readable text: ``GUID:name``.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, or_, select

from jobhooks.sdk.enums import JobResult
from jobhooks.store.dialect import insert_ignore, upsert
from jobhooks.store.stats import BY_TYPE
from jobhooks.store.tables import completion_stats, job_types
from jobhooks.store.views import JobTypePage, JobTypeView

__all__ = [
    "CURSOR_PATTERN",
    "MAX_CURSOR",
    "NAME_KEY_CHARS",
    "NIL",
    "job_type_names",
    "job_type_order",
    "job_type_page",
    "page_cursor",
    "page_position",
    "record_seen",
    "resolvable_names",
    "save_synced",
]

NIL = uuid.UUID(int=0)
"""The platform's ``Guid.Empty``: a job type that could not be resolved (never cataloged)."""
NAME_KEY_CHARS = 512
"""Job types are ordered by the first this many characters of their name, then by GUID.
A check-in's job type name is at most this long, so this is name order; the bound keeps
cursors short whatever a synced or configured name holds."""
MAX_CURSOR = 36 + 1 + NAME_KEY_CHARS
"""The longest cursor :func:`page_cursor` makes: a GUID, a colon and a name key."""
CURSOR_PATTERN = r"^[^:\x00]{0,36}:[^\x00]*$"
"""What every cursor looks like: the GUID (or nothing), a colon, then the name."""
_ORIGIN_RANK = {"config": 3, "synced": 2, "seen": 1}
_FAILURE = int(JobResult.FAILURE)
_DAY = 86_400


# -- writing -------------------------------------------------------------------


def record_seen(
    connection: Connection, seen: Mapping[str, str], now: float, known: set[str] | None = None
) -> None:
    """Add the job types of new completions (GUID -> name) not cataloged yet; ``known``
    (GUIDs already recorded by this process) spares the write, and is updated."""
    fresh = {
        guid: name
        for guid, name in seen.items()
        if guid != str(NIL) and (known is None or guid not in known)
    }
    if not fresh:
        return
    rows = [
        {"id": guid, "name": name, "origin": "seen", "first_seen": now}
        for guid, name in fresh.items()
    ]
    connection.execute(insert_ignore(connection, job_types), rows)
    if known is not None:
        known.update(fresh)


def save_synced(
    connection: Connection, entries: Sequence[tuple[str, uuid.UUID]], now: float
) -> int:
    """Upsert the platform's catalog, (name, GUID) pairs: a type seen before becomes
    ``synced``. Returns how many job types it has."""
    rows = {
        str(guid): {"id": str(guid), "name": name, "origin": "synced", "first_seen": now}
        for name, guid in entries
    }
    if rows:
        connection.execute(
            upsert(connection, job_types, "id", ["name", "origin"]), list(rows.values())
        )
    return len(rows)


# -- reading -------------------------------------------------------------------


def resolvable_names(connection: Connection) -> dict[str, uuid.UUID]:
    """Names to GUIDs, for resolving names in registrations and in the platform's job
    history; where a name has several GUIDs, synced beats seen. A name only seen (in
    reports), with several GUIDs, resolves to none: any orchestrator may report any
    pair, and the first row must not decide which job type a registration means."""
    chosen: dict[str, tuple[int, uuid.UUID]] = {}
    ambiguous: set[str] = set()
    for row in connection.execute(select(job_types.c.id, job_types.c.name, job_types.c.origin)):
        rank = _ORIGIN_RANK.get(row.origin, 0)
        try:
            guid = uuid.UUID(row.id)
        except ValueError:
            continue
        best = chosen.get(row.name)
        if best is None or rank > best[0]:
            chosen[row.name] = (rank, guid)
            ambiguous.discard(row.name)
        elif rank == best[0] and guid != best[1]:
            ambiguous.add(row.name)
    return {
        name: guid
        for name, (rank, guid) in chosen.items()
        if not (name in ambiguous and rank == _ORIGIN_RANK["seen"])
    }


def job_type_names(connection: Connection, ids: Sequence[str] | None = None) -> dict[str, str]:
    """Names of cataloged job types, by GUID (those of ``ids`` only, when given)."""
    query = select(job_types.c.id, job_types.c.name)
    if ids is not None:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = query.where(job_types.c.id.in_(wanted))
    return {row.id: row.name for row in connection.execute(query)}


def _key(name: str | None, guid: str) -> tuple[str, str]:
    return (name or "")[:NAME_KEY_CHARS], guid


def page_cursor(view: JobTypeView) -> str:
    """The cursor of the page after ``view``: ``GUID:name``, readable and exact whatever
    the name holds (it is a query parameter's text)."""
    name, guid = _key(view.name, view.id)
    return f"{guid}:{name}"


def page_position(cursor: str) -> tuple[str, str]:
    """The place in the list a cursor of :func:`page_cursor` stands for: any text of the
    form ``GUID:name`` is one. Raises ValueError for text of another form."""
    guid, colon, name = cursor.partition(":")
    if not colon or len(guid) > 36:
        raise ValueError("not a job type cursor: pass the `next` of a previous page")
    return name[:NAME_KEY_CHARS], guid


def job_type_order(connection: Connection) -> tuple[Any, Any]:
    """The SQL expressions job types are ordered by (name key, GUID)."""
    name: Any = func.substr(job_types.c.name, 1, NAME_KEY_CHARS)
    guid: Any = job_types.c.id
    if connection.dialect.name == "postgresql":
        # The database's collation may be linguistic; pages merge rows in code point
        # order (SQLite's and Python's), and a cursor must mean the same on every node.
        name, guid = name.collate("C"), guid.collate("C")
    return name, guid


def _stored(
    connection: Connection, limit: int, after: tuple[str, str] | None, named: Mapping[str, str]
) -> list[JobTypeView]:
    name_key, guid_key = job_type_order(connection)
    query = select(job_types).order_by(name_key, guid_key).limit(limit)
    if after is not None:
        query = query.where(
            or_(name_key > after[0], and_(name_key == after[0], guid_key > after[1]))
        )
    return [
        JobTypeView(row.id, row.name, row.origin, row.first_seen, named.get(row.id))
        for row in connection.execute(query)
    ]


def _configured(
    connection: Connection, limit: int, after: tuple[str, str] | None, named: Mapping[str, str]
) -> list[JobTypeView]:
    # Job types named only in [job_types]: no row, merged in by their configured name.
    if not named:
        return []
    stored = set(
        connection.execute(
            select(job_types.c.id).where(job_types.c.id.in_(sorted(named)))
        ).scalars()
    )
    only = sorted(
        (_key(name, guid), guid, name)
        for guid, name in named.items()
        if guid not in stored and (after is None or _key(name, guid) > after)
    )
    return [JobTypeView(guid, name, "config", None, name) for _key_, guid, name in only[:limit]]


def _unresolved(
    connection: Connection, limit: int, after: tuple[str, str] | None, named: Mapping[str, str]
) -> list[JobTypeView]:
    # Counted in completions but named nowhere (the nil id of a job type the poller could
    # not resolve): nameless, they sort first.
    if after is not None and after[0] != "":
        return []
    s = completion_stats.c
    subject = s.subject.collate("C") if connection.dialect.name == "postgresql" else s.subject
    query = (
        select(s.subject)
        .where(s.dimension == BY_TYPE, ~exists().where(job_types.c.id == s.subject))
        .group_by(s.subject)
        .order_by(subject)
        .limit(limit)
    )
    if named:
        query = query.where(s.subject.not_in(sorted(named)))
    if after is not None:
        query = query.where(subject > after[1])
    return [
        JobTypeView(guid, None, "unresolved", None, None)
        for guid in connection.execute(query).scalars()
    ]


def job_type_page(
    connection: Connection,
    now: float,
    limit: int,
    after: tuple[str, str] | None = None,
    named: Mapping[str, str] | None = None,
) -> JobTypePage:
    """``limit`` job types after the place ``after`` (see :func:`page_position`), with
    their completions over the retention period, their failures, and the last day's, from
    the hourly summaries of the ids on the page only. ``named`` is the configuration's
    ``[job_types]`` (GUID -> name)."""
    named = named or {}
    parts = [
        _unresolved(connection, limit + 1, after, named),
        _stored(connection, limit + 1, after, named),
        _configured(connection, limit + 1, after, named),
    ]
    merged = heapq.merge(*parts, key=lambda view: _key(view.name, view.id))
    views = [view for _, view in zip(range(limit + 1), merged, strict=False)]
    s = completion_stats.c
    failures = func.sum(case((s.job_result == _FAILURE, s.count), else_=0))
    recent = func.sum(case((s.bucket >= int((now - _DAY) // 3600) * 3600, s.count), else_=0))
    query = (
        select(s.subject, func.sum(s.count), failures, recent)
        .where(s.dimension == BY_TYPE, s.subject.in_([view.id for view in views]))
        .group_by(s.subject)
    )
    totals = {
        subject: (int(total), int(failed or 0), int(day or 0))
        for subject, total, failed, day in connection.execute(query)
    }
    items = [
        JobTypeView(
            view.id,
            view.name,
            view.origin,
            view.first_seen,
            view.config_name,
            *totals.get(view.id, (0, 0, 0)),
        )
        for view in views[:limit]
    ]
    following = page_cursor(items[-1]) if len(views) > limit else None
    return JobTypePage(items, following)
