"""The SQLite files beside the database deleted under a running node.

The ``-shm`` file is where the processes on one database coordinate: which part of the
log is committed, who writes. Deleted, the node keeps its own copy mapped while the next
process to open the database (a ``jobhooks token create``, a backup, a second worker)
makes a new one; each then writes the log believing it is alone, and the database is
damaged. The node notices at its next write, before acknowledging it, and writes no more.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from support.reports import new_completion

from jobhooks.errors import DatabaseLost
from jobhooks.store import Store


def test_a_shared_memory_file_deleted_under_a_running_node_stops_its_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobhooks.db"
    store = Store(f"sqlite:///{path}")
    before, after = new_completion("log"), new_completion("log")

    async def main() -> None:
        await store.check_in(before)
        path.with_name(path.name + "-shm").unlink()
        with pytest.raises(DatabaseLost, match="-shm was deleted"):
            await store.check_in(after)

    try:
        asyncio.run(main())
        assert "-shm was deleted" in (store.unready() or "")
    finally:
        store.close()
    with sqlite3.connect(path) as reading:
        assert reading.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in reading.execute("SELECT id FROM completions")}
    assert before.id in stored, "what was acknowledged is kept"
