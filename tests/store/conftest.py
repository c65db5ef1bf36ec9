"""A migrated SQLite store in the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.storedb import StoreDb

from jobhooks.store.engine import connect
from jobhooks.store.migrate import upgrade


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StoreDb]:
    """A migrated SQLite database (WAL, synchronous=FULL) in the test's directory."""
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    try:
        yield StoreDb(engine)
    finally:
        engine.dispose()
