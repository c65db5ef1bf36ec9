"""What ``/metrics`` says about the store's group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest
from support.reports import new_completion

from jobhooks.metrics import Metrics
from jobhooks.store import Store


def _value(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split(" ")[1])


def test_commits_and_the_writes_they_carried_are_exported(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobhooks.db'}")
    metrics = Metrics()
    writer = store.writer
    metrics.watch_store(lambda: (writer.batches, writer.items))

    async def together(count: int) -> None:
        await asyncio.gather(*(store.check_in(new_completion("log")) for _ in range(count)))

    try:
        before = generate_latest(metrics.registry).decode()
        asyncio.run(together(20))
        asyncio.run(together(1))
        after = generate_latest(metrics.registry).decode()
    finally:
        store.close()

    commits = _value(after, "jobhooks_store_commits_total")
    writes = _value(after, "jobhooks_store_writes_total")
    assert writes - _value(before, "jobhooks_store_writes_total") == 21
    assert 2 <= commits - _value(before, "jobhooks_store_commits_total") < 21, (
        "twenty check-ins sent together share transactions"
    )
