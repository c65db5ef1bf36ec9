"""The job type catalog read one page at a time, on both databases: every job type once,
in the same order whatever the database's collation, with bounded cursors and counts
taken from the dashboard's summaries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from support.catalog import add_job_types, bulk_job_types
from support.reports import AGENT_B, new_completion
from support.storedb import StoreDb

from jobhooks.store import dashboard, queries
from jobhooks.store.checkins import insert_checkins

NOW = float(int(time.time()) // 3600 * 3600)
NIL = str(uuid.UUID(int=0))
CONFIG_ONLY = "0a1e5c2d-0000-4000-8000-00000000c0f1"

Read = Callable[[int, "tuple[str, str] | None"], list[dict[str, Any]]]


def _linguistic_collation(db: StoreDb) -> None:
    # A PostgreSQL server initialised with a linguistic locale orders "a" before "B"
    # and ignores punctuation at first; the pages must not depend on it.
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            connection.exec_driver_sql(
                'ALTER TABLE job_types ALTER COLUMN name TYPE TEXT COLLATE "en-x-icu", '
                'ALTER COLUMN id TYPE VARCHAR(36) COLLATE "en-x-icu"'
            )


def _catalog(db: StoreDb) -> list[dict[str, Any]]:
    rows = bulk_job_types(40)
    rows += [
        {"id": str(uuid.uuid4()), "name": name, "origin": "synced", "first_seen": NOW}
        for name in ("L" * 600 + "b", "L" * 600 + "a", "東" * 600, "🙂" * 513)
    ]
    add_job_types(db.engine, rows)
    return rows


def _pages(read: Read, limit: int) -> list[list[dict[str, Any]]]:
    """Every page, following the cursor (through its text form) from one to the next."""
    pages = []
    after = None
    while True:
        rows = read(limit + 1, after)
        pages.append(rows[:limit])
        if len(rows) <= limit:
            return pages
        last = rows[limit - 1]
        cursor = queries.job_type_cursor(last["name"], last["id"])
        assert len(cursor) <= queries.MAX_JOB_TYPE_CURSOR
        after = queries.job_type_position(cursor)


def _key(name: str | None, guid: str) -> tuple[str, str]:
    return (name or "")[: queries.NAME_KEY_CHARS], guid


def test_the_catalog_pages_list_every_job_type_once_in_one_order(db: StoreDb) -> None:
    _linguistic_collation(db)
    rows = _catalog(db)
    counted, aliased = rows[3], rows[7]
    db.apply(
        insert_checkins,
        [
            new_completion(
                job_type_id=uuid.UUID(counted["id"]), job_type=counted["name"], job_result="Failure"
            ),
            new_completion(job_type_id=uuid.UUID(int=0), job_type="Unresolved", agent_id=AGENT_B),
        ],
        NOW,
    )
    named = {CONFIG_ONLY: "Named in config", aliased["id"]: "Alias"}
    expected = sorted(
        [_key(row["name"], row["id"]) for row in rows]
        + [_key("Named in config", CONFIG_ONLY), _key(None, NIL)]
    )

    pages = _pages(
        lambda limit, after: dashboard.job_type_catalog(db.engine, NOW + 60, limit, after, named),
        7,
    )

    assert all(len(page) <= 7 for page in pages)
    listed = [row for page in pages for row in page]
    assert [_key(row["name"], row["id"]) for row in listed] == expected
    by_id = {row["id"]: row for row in listed}
    assert (by_id[counted["id"]]["completions"], by_id[counted["id"]]["failures"]) == (1, 1)
    assert by_id[counted["id"]]["last_day"] == 1
    assert (by_id[NIL]["origin"], by_id[NIL]["name"], by_id[NIL]["completions"]) == (
        "unresolved",
        None,
        1,
    )
    assert by_id[CONFIG_ONLY]["origin"] == "config"
    assert by_id[CONFIG_ONLY]["config_name"] == "Named in config"
    assert by_id[aliased["id"]]["config_name"] == "Alias"
    assert by_id[aliased["id"]]["origin"] == "seen"


def test_the_api_pages_list_the_catalog_and_the_configuration(db: StoreDb) -> None:
    _linguistic_collation(db)
    rows = _catalog(db)
    counted = rows[11]
    db.apply(
        insert_checkins,
        [
            new_completion(job_type_id=uuid.UUID(counted["id"]), job_type=counted["name"])
            for _ in range(3)
        ],
        NOW,
    )
    named = {CONFIG_ONLY: "Named in config"}
    expected = sorted(
        [_key(row["name"], row["id"]) for row in rows] + [_key("Named in config", CONFIG_ONLY)]
    )

    pages = _pages(lambda limit, after: queries.list_job_types(db.engine, limit, after, named), 5)

    listed = [row for page in pages for row in page]
    assert [_key(row["name"], row["id"]) for row in listed] == expected
    by_id = {row["id"]: row for row in listed}
    assert by_id[counted["id"]]["completions"] == 3
    assert by_id[CONFIG_ONLY] == {
        "id": CONFIG_ONLY,
        "name": "Named in config",
        "origin": "config",
        "first_seen": None,
        "completions": 0,
        "config_name": "Named in config",
    }
    # Without a limit, the whole catalog (the runtime resolves names with it).
    assert len(queries.list_job_types(db.engine)) == len(rows)


def test_a_cursor_is_text_that_only_this_list_accepts(db: StoreDb) -> None:
    for name in ("", "a\nb", "東" * 600, "x" * 513):
        cursor = queries.job_type_cursor(name, CONFIG_ONLY)
        assert len(cursor) <= queries.MAX_JOB_TYPE_CURSOR
        assert queries.job_type_position(cursor) == _key(name, CONFIG_ONLY)
    for bad in ("", "not a cursor", "%%%", "AAAA", "x" * 5000):
        try:
            queries.job_type_position(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was taken for a cursor")


def test_the_filter_choices_leave_out_a_catalog_too_large_for_a_list(db: StoreDb) -> None:
    add_job_types(db.engine, bulk_job_types(3, odd=False))

    assert len(dashboard.filter_choices(db.engine, limit=3)["job_types"]) == 3
    assert dashboard.filter_choices(db.engine, limit=2)["job_types"] == []
