"""Worker processes sharing one PostgreSQL database: claims never overlap, and a worker
that dies mid-run loses nothing (its heartbeat stops and another worker takes the run
within seconds)."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import pytest
from sqlalchemy import select
from support.reports import new_completion
from support.server import wait_for

from jobhooks.store import Store
from jobhooks.store.records import CheckinReceipt
from jobhooks.store.tables import attempts, runs
from multinode.handlers import trace_lines
from multinode.nodes import Cluster

RUNS = 5_000
WORKERS = 3


def _store(url: str, count: int, handler: str) -> list[CheckinReceipt]:
    """Check ``count`` completions in through the Store facade, as an API node does."""
    store = Store(url)

    async def main() -> list[CheckinReceipt]:
        reports = [new_completion(handler) for _ in range(count)]
        return list(await asyncio.gather(*(store.check_in(report) for report in reports)))

    try:
        return asyncio.run(main())
    finally:
        store.close()


def test_three_workers_share_5000_runs_and_run_each_exactly_once(cluster: Cluster) -> None:
    trace, gate = cluster.directory / "runs.log", cluster.directory / "gate"
    cluster.write_config(
        f"""
        [[handlers]]
        name = "record"
        type = "multinode.handlers:Recorder"
        job_types = "*"
        timeout = 60
        properties = {{ path = "{trace}", gate = "{gate}" }}
        """,
        lease=5,
    )
    receipts = _store(cluster.url, RUNS, "record")
    stored = {receipt.id for receipt in receipts}
    assert len(stored) == RUNS and all(len(r.runs) == 1 for r in receipts)
    assert cluster.run_counts() == {"pending": RUNS}

    workers = [cluster.worker() for _ in range(WORKERS)]
    cluster.wait_listening("jobhooks_runs", WORKERS)
    # Until the gate opens every handler waits, so each worker holds its first
    # claim: the first worker up cannot have finished the lot alone.
    wait_for(
        lambda: len({row.worker for row in _held(cluster)}) == WORKERS,
        30,
        "every worker to hold runs",
    )
    started = time.monotonic()
    gate.touch()
    cluster.wait_all_final(RUNS, timeout=60)
    elapsed = time.monotonic() - started

    lines = trace_lines(trace)
    executions = collections.Counter(line[0] for line in lines)
    assert set(executions) == stored
    repeated = {cid: n for cid, n in executions.items() if n != 1}
    assert not repeated, f"{len(repeated)} completions ran more than once: {list(repeated)[:5]}"
    assert {line[1] for line in lines} == {"1"}, "no run needed a second attempt"
    assert len(lines) == RUNS

    pids = {str(worker.pid) for worker in workers}
    shares = collections.Counter(line[2] for line in lines)
    assert set(shares) == pids, f"runs per worker pid: {dict(shares)}"
    assert cluster.run_counts() == {"succeeded": RUNS}
    with cluster.engine.connect() as connection:
        history = connection.execute(select(attempts.c.run_id, attempts.c.outcome)).all()
        totals = {row.total_attempts for row in connection.execute(select(runs.c.total_attempts))}
    assert len(history) == RUNS and {row.outcome for row in history} == {"succeeded"}
    assert totals == {1}
    print(f"\n{RUNS} runs in {elapsed:.1f} s; runs per worker: {sorted(shares.values())}")


def _held(cluster: Cluster) -> list[Any]:
    with cluster.engine.connect() as connection:
        return list(connection.execute(select(runs.c.worker).where(runs.c.worker.is_not(None))))


@pytest.mark.parametrize(
    "hosts",
    [(None, None), ("node-a", "node-b")],
    ids=["same machine: its pid is gone", "other machines: its heartbeat stops"],
)
def test_a_worker_killed_mid_run_leaves_a_lost_attempt_and_another_finishes(
    cluster: Cluster, hosts: tuple[str | None, str | None]
) -> None:
    trace = cluster.directory / "stall.log"
    # A long timeout and the default [server] lease: the run's lease lasts 90 s, so only
    # the killed worker's silence can explain a takeover within seconds.
    cluster.write_config(
        f"""
        [[handlers]]
        name = "stall"
        type = "multinode.handlers:StallsOnFirstAttempt"
        job_types = "*"
        timeout = 30
        max_attempts = 3
        properties = {{ path = "{trace}", stall = 120 }}
        """
    )
    workers = {worker.pid: worker for worker in (cluster.worker(h) for h in hosts)}
    cluster.wait_listening("jobhooks_runs", 2)
    [receipt] = _store(cluster.url, 1, "stall")

    first = wait_for(lambda: trace_lines(trace), 10, "the first attempt to start")
    assert first[0][:3] == ["started", receipt.id, "1"]
    victim = workers.pop(int(first[0][3]))
    victim.kill()
    killed_at = time.monotonic()
    [survivor] = workers.values()

    def resumed() -> list[str] | None:
        survivor.assert_running()
        return next((line for line in trace_lines(trace) if line[0] == "done"), None)

    finished = wait_for(resumed, 20, "another worker to resume the run within 20 s")
    took = time.monotonic() - killed_at
    assert finished == ["done", receipt.id, "2", str(survivor.pid)]

    detail = wait_for(
        lambda: _settled(cluster.detail(receipt.id)), 10, "the outcome to be recorded"
    )
    [run] = detail["handler_runs"]
    assert run["status"] == "succeeded"
    assert run["total_attempts"] == 2
    lost, succeeded = run["attempt_history"]
    assert lost["outcome"] == "lost"
    assert lost["worker"].split(":")[1] == str(victim.pid)
    assert "process is gone" in lost["error"]
    assert succeeded["outcome"] == "succeeded"
    assert succeeded["worker"].split(":")[1] == str(survivor.pid)
    assert [line[0] for line in trace_lines(trace)] == ["started", "started", "done"]
    print(f"\nanother worker resumed the killed worker's run {took:.1f} s after the kill")


def _settled(detail: dict[str, Any]) -> dict[str, Any] | None:
    return detail if all(r["status"] == "succeeded" for r in detail["handler_runs"]) else None
