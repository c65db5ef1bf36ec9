"""A job type catalog as large as an agent token can make it, written straight to the table."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Engine, insert

from jobhooks.store.tables import job_types

ODD_NAMES = (
    "",
    " ",
    "a\nb",
    "ALPHA",
    "Alpha",
    "alpha",
    "e",
    "é",
    "z",
    "東京 Inventory",
    "🙂 emoji",
    'quote " and \\ backslash',
    "a/b?c=d&e#f",
    "+/=",
    "Type 00001",  # the same name as a bulk row: the GUID breaks the tie
)
"""Names that order differently under a linguistic collation, or that a cursor must carry."""


def bulk_job_types(count: int, *, odd: bool = True) -> list[dict[str, Any]]:
    """``count`` catalog rows (``Type 00000``...) with distinct random GUIDs, plus the
    :data:`ODD_NAMES` when ``odd``."""
    now = time.time()
    names = [f"Type {index:05d}" for index in range(count)]
    if odd:
        names += list(ODD_NAMES)
    return [
        {"id": str(uuid.uuid4()), "name": name, "origin": "seen", "first_seen": now}
        for name in names
    ]


def add_job_types(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert catalog rows in one transaction (executemany)."""
    with engine.begin() as connection:
        connection.execute(insert(job_types), rows)
