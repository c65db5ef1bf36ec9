"""The job type catalog read one page at a time, on both databases: every job type once,
in the same order whatever the database's collation, with bounded cursors and counts
taken from the summaries check-ins keep."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from support.catalog import add_job_types, bulk_job_types
from support.reports import AGENT_B, new_completion
from support.storedb import StoreDb

from jobhooks.store.catalog import (
    MAX_CURSOR,
    NAME_KEY_CHARS,
    job_type_page,
    page_cursor,
    page_position,
    record_seen,
    resolvable_names,
    save_synced,
)
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.reads import filter_choices
from jobhooks.store.views import JobTypeView

NOW = float(int(time.time()) // 3600 * 3600)
NIL = str(uuid.UUID(int=0))
CONFIG_ONLY = "0a1e5c2d-0000-4000-8000-00000000c0f1"

Read = Callable[[int, "tuple[str, str] | None"], list[JobTypeView]]


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


def _pages(db: StoreDb, limit: int, named: dict[str, str]) -> list[list[JobTypeView]]:
    """Every page, following the cursor (through its text form) from one to the next."""
    pages = []
    after = None
    while True:
        page = db.read(job_type_page, NOW + 60, limit, after, named)
        pages.append(page.items)
        if page.next is None:
            return pages
        assert len(page.next) <= MAX_CURSOR
        after = page_position(page.next)


def _key(name: str | None, guid: str) -> tuple[str, str]:
    return (name or "")[:NAME_KEY_CHARS], guid


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

    pages = _pages(db, 7, named)

    assert all(len(page) <= 7 for page in pages)
    listed = [row for page in pages for row in page]
    assert [_key(row.name, row.id) for row in listed] == expected
    by_id = {row.id: row for row in listed}
    assert (by_id[counted["id"]].completions, by_id[counted["id"]].failures) == (1, 1)
    assert by_id[counted["id"]].last_day == 1
    assert (by_id[NIL].origin, by_id[NIL].name, by_id[NIL].completions) == ("unresolved", None, 1)
    assert by_id[CONFIG_ONLY].as_json() == {
        "id": CONFIG_ONLY,
        "name": "Named in config",
        "origin": "config",
        "first_seen": None,
        "config_name": "Named in config",
        "completions": 0,
        "failures": 0,
        "last_day": 0,
    }
    assert by_id[aliased["id"]].config_name == "Alias"
    assert by_id[aliased["id"]].origin == "seen"


def test_a_cursor_is_text_that_only_this_list_accepts(db: StoreDb) -> None:
    for name in ("", "a\nb", "東" * 600, "x" * 513):
        cursor = page_cursor(JobTypeView(CONFIG_ONLY, name, "config", None, None))
        assert len(cursor) <= MAX_CURSOR
        assert page_position(cursor) == _key(name, CONFIG_ONLY)
    for bad in ("", "not a cursor", "%%%", "AAAA", "x" * 5000):
        try:
            page_position(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was taken for a cursor")


def test_the_filter_choices_leave_out_a_catalog_too_large_for_a_list(db: StoreDb) -> None:
    add_job_types(db.engine, bulk_job_types(3, odd=False))

    assert len(db.read(filter_choices, limit=3).job_types) == 3
    assert db.read(filter_choices, limit=2).job_types == []


def test_a_name_reports_gave_with_two_guids_resolves_to_neither_until_synced(
    db: StoreDb,
) -> None:
    """Any orchestrator may report any (GUID, name) pair: a name seen with two GUIDs must
    not resolve to whichever row comes first (a registration by that name would follow
    the impostor, silencing its alerts)."""
    real, impostor = str(uuid.uuid4()), str(uuid.uuid4())
    db.apply(lambda c, _i, now: record_seen(c, {impostor: "RealInventory"}, now), [None], NOW)
    assert db.read(resolvable_names)["RealInventory"] == uuid.UUID(impostor), "one GUID: it"
    db.apply(lambda c, _i, now: record_seen(c, {real: "RealInventory"}, now), [None], NOW)

    assert "RealInventory" not in db.read(resolvable_names)

    db.apply(
        lambda c, _i, now: save_synced(c, [("RealInventory", uuid.UUID(real))], now), [None], NOW
    )
    assert db.read(resolvable_names)["RealInventory"] == uuid.UUID(real), "the platform decides"
