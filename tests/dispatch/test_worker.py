"""The worker in one process with a real store: handed-over runs, claims, retries, stop."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.clock import ManualClock
from support.handlers import read_lines
from support.misbehaving import process_ended
from support.registrations import build_registry
from support.reports import new_completion

from jobhooks.config.schema import PlatformSettings
from jobhooks.dispatch import isolation, threads
from jobhooks.dispatch.worker import Worker
from jobhooks.errors import StoreError
from jobhooks.intake import LeasePolicy
from jobhooks.metrics import Metrics
from jobhooks.platform.client import build_clients
from jobhooks.registry import Registry
from jobhooks.store import Store
from jobhooks.store.nodes import STALE_AFTER, NodeIdentity
from jobhooks.store.ports import LocalWorker, WorkerStore
from jobhooks.store.records import ClaimedRun, DigestPlan, RunOutcome, RunStatus
from jobhooks.store.tables import runs


@asynccontextmanager
async def running_worker(
    store: Store,
    registry: Callable[[], Registry],
    *,
    local: bool = True,
    poll: float = 0.05,
    threads: int = 2,
    through: WorkerStore | None = None,
    record_retry: float = 0.5,
    worker_id: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Worker]:
    """A running worker on ``store`` (``through`` another view of it); with ``local`` the
    store's check-ins hand it their runs. Stopped on the way out if the test did not."""
    worker = Worker(
        through or store,
        registry,
        build_clients(PlatformSettings()),
        LeasePolicy(1.0),
        concurrency=8,
        threads=threads,
        poll_interval=poll,
        metrics=Metrics(),
        record_retry=record_retry,
        worker_id=worker_id,
        clock=clock,
    )
    if local:
        store.set_local_worker(worker)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        started = time.perf_counter()
        await worker.stop(grace=0.5)
        assert time.perf_counter() - started < 2, "stop waits for running handlers only briefly"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.set_local_worker(None)


def _appender(directory: Path, trace: Path) -> Registry:
    """A registry of one handler, ``append``, that writes each execution to ``trace``."""
    return build_registry(
        directory,
        {"name": "append", "type": "support.handlers:Appender", "properties": {"path": str(trace)}},
    )


async def handing_over(worker: Worker) -> None:
    """Let a new worker finish its first look for due runs (which holds every slot), so
    check-ins hand it their runs."""
    await asyncio.sleep(0.1)


async def settled(store: Store, completion_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await store.reads.completion(completion_id)
        assert found is not None
        detail = found.as_json()
        if all(run["status"] in ("succeeded", "dead") for run in detail["handler_runs"]):
            return detail
        assert time.monotonic() < deadline, f"runs still open: {detail['handler_runs']}"
        await asyncio.sleep(0.02)


def test_runs_handed_over_by_a_check_in_run_at_once(tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    registry = _appender(tmp_path, trace)
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> None:
        async with running_worker(store, lambda: registry, poll=60) as worker:
            # Let it finish its first look for due runs (which holds every slot).
            await asyncio.sleep(0.2)
            receipt = await store.check_in(new_completion("append"))
            assert len(receipt.handed_off) == 1
            detail = await settled(store, receipt.id)
            assert detail["handler_runs"][0]["status"] == "succeeded"
            assert worker.completed == 1
        assert read_lines(trace) == [f"{receipt.id} 1"]

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_runs_stored_elsewhere_are_claimed_retried_and_end_dead(tmp_path: Path) -> None:
    registry = build_registry(
        tmp_path,
        {
            "name": "flaky",
            "type": "support.handlers:Flaky",
            "backoff": 0.01,
            "properties": {"state_dir": str(tmp_path), "failures": 2},
        },
        {"name": "doomed", "type": "support.handlers:Raises", "backoff": 0.01, "max_attempts": 3},
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> None:
        # Stored with no worker in this process, as by an API-only node.
        receipt = await store.check_in(new_completion("flaky", "doomed", max_attempts=3))
        assert receipt.handed_off == []
        async with running_worker(store, lambda: registry, local=False):
            detail = await settled(store, receipt.id)
        runs = {run["handler"]: run for run in detail["handler_runs"]}
        assert runs["flaky"]["status"] == "succeeded"
        assert [a["outcome"] for a in runs["flaky"]["attempt_history"]] == [
            "failed",
            "failed",
            "succeeded",
        ]
        assert runs["doomed"]["status"] == "dead"
        assert runs["doomed"]["attempts"] == 3
        history = runs["doomed"]["attempt_history"]
        gaps = [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(history)]
        assert all(gap >= 0.01 * 0.75 for gap in gaps), "each retry waits for its backoff"

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_a_permanent_failure_is_dead_at_once_however_the_handler_runs(tmp_path: Path) -> None:
    givers = {
        "in-a-thread": {"type": "support.handlers:GivesUp"},
        "on-the-loop": {"type": "support.handlers:AsyncGivesUp"},
        "in-a-process": {"type": "support.handlers:GivesUp", "isolation": "process"},
    }
    registry = build_registry(
        tmp_path,
        *({"name": name, "backoff": 0.01, **kind} for name, kind in givers.items()),
        {"name": "doomed", "type": "support.handlers:Raises", "backoff": 0.01},
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> None:
        receipt = await store.check_in(new_completion(*givers, "doomed", max_attempts=3))
        async with running_worker(store, lambda: registry, local=False):
            detail = await settled(store, receipt.id)
        runs = {run["handler"]: run for run in detail["handler_runs"]}
        for name in givers:
            assert runs[name]["status"] == "dead", name
            assert [a["outcome"] for a in runs[name]["attempt_history"]] == ["failed"], name
            assert runs[name]["last_error"] == (
                "PermanentFailure: the receiver was removed (410 Gone) "
                "(a permanent failure: not retried)"
            ), name
        # Any other failure is retried as before.
        assert runs["doomed"]["attempts"] == 3

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_a_run_of_a_handler_disabled_by_a_reload_is_held_without_an_attempt(
    tmp_path: Path,
) -> None:
    """A registration a reload removed (or disabled) has runs waiting: they are held, with
    no attempt used (they used all of them at once before), and run once a reload makes
    the registration valid again."""
    trace = tmp_path / "trace.log"
    enabled = _appender(tmp_path, trace)
    registries = [Registry()]
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        receipts = [
            await store.check_in(new_completion("append", max_attempts=2)) for _ in range(3)
        ]
        async with running_worker(store, lambda: registries[0], local=False):
            waiting = [await held(store, receipt.id) for receipt in receipts]
            registries[0] = enabled  # a reload brings it back, and releases its held runs
            assert await store.release_held([("append", 2)]) == 3
            return waiting, [await settled(store, receipt.id) for receipt in receipts]

    try:
        waiting, details = asyncio.run(main())
    finally:
        store.close()
    for detail in waiting:
        [run] = detail["handler_runs"]
        assert (run["status"], run["attempts"], run["attempt_history"]) == ("held", 0, [])
    for detail in details:
        [run] = detail["handler_runs"]
        assert (run["status"], run["total_attempts"]) == ("succeeded", 1)
    assert sorted(read_lines(trace)) == sorted(f"{detail['id']} 1" for detail in details)


async def held(store: Store, completion_id: str) -> dict[str, Any]:
    """The completion once its run is held (bounded wait)."""
    for _ in range(500):
        detail = (await store.reads.completion(completion_id)).as_json()  # type: ignore[union-attr]
        if detail["handler_runs"][0]["status"] == "held":
            return detail
        await asyncio.sleep(0.01)
    raise AssertionError(f"the run of {completion_id} was not held: {detail['handler_runs']}")


def test_a_hung_handler_neither_blocks_others_nor_the_stop(tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {"name": "hangs", "type": "support.handlers:Hangs", "timeout": 0.2, "max_attempts": 1},
        {"name": "append", "type": "support.handlers:Appender", "properties": {"path": str(trace)}},
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> None:
        async with running_worker(store, lambda: registry):
            receipts = [
                await store.check_in(new_completion("hangs", "append", max_attempts=1))
                for _ in range(4)
            ]
            for receipt in receipts:
                runs = {r["handler"]: r for r in (await settled(store, receipt.id))["handler_runs"]}
                assert runs["append"]["status"] == "succeeded"
                assert runs["hangs"]["last_error"] == "timed out after 0.2 s"
            # A last one still hangs while the worker stops.
            await store.check_in(new_completion("hangs", max_attempts=1))
        assert len(read_lines(trace)) == 4

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_sync_runs_beyond_the_free_threads_wait_without_timing_out(tmp_path: Path) -> None:
    """Eight runs of a 0.3 s handler on two threads (timeout 0.5 s): those that wait for
    a thread are not recorded as timed out, and every body runs exactly once."""
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "slow",
            "type": "support.handlers:Sleeps",
            "timeout": 0.5,
            "backoff": 0.01,
            "properties": {"path": str(trace), "seconds": 0.3},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> list[dict[str, Any]]:
        async with running_worker(store, lambda: registry):
            receipts = [await store.check_in(new_completion("slow")) for _ in range(8)]
            return [await settled(store, receipt.id) for receipt in receipts]

    try:
        details = asyncio.run(main())
    finally:
        store.close()
    runs = [detail["handler_runs"][0] for detail in details]
    assert [run["status"] for run in runs] == ["succeeded"] * 8
    assert [run["total_attempts"] for run in runs] == [1] * 8, [r["last_error"] for r in runs]
    assert all(run["duration"] < 0.5 for run in runs), "durations count the handler only"
    executions = [line.split()[0] for line in read_lines(trace)]
    assert sorted(executions) == sorted(detail["id"] for detail in details)


def test_each_digest_starts_when_it_closes_not_at_the_next_poll(tmp_path: Path) -> None:
    trace = tmp_path / "digests.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "digest",
            "type": "support.handlers:GroupAppender",
            "properties": {"path": str(trace)},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    plan = {"digest": DigestPlan(("client_machine",), 0.3, 100)}

    async def main() -> None:
        async with running_worker(store, lambda: registry, poll=60):
            await asyncio.sleep(0.2)  # its first look for due runs is over
            first = [
                await store.check_in(new_completion("digest", digests=plan, client_machine="a"))
                for _ in range(2)
            ]
            await asyncio.sleep(0.1)  # the second machine's digest closes 0.1 s later
            second = await store.check_in(
                new_completion("digest", digests=plan, client_machine="b")
            )
            deadline = time.monotonic() + 3
            while len(read_lines(trace)) < 2:
                assert time.monotonic() < deadline, "a digest waited for the next poll (60 s)"
                await asyncio.sleep(0.02)
        assert sorted(read_lines(trace)) == sorted(
            [f"1 {first[0].id},{first[1].id}", f"1 {second.id}"]
        )

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_a_stop_waits_for_sync_runs_in_progress_and_records_them(tmp_path: Path) -> None:
    """Two 0.3 s runs on two threads when the worker is told to stop: within its grace
    each finishes and is recorded as succeeded (none is left to run a second time)."""
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "slow",
            "type": "support.handlers:Sleeps",
            "properties": {"path": str(trace), "seconds": 0.3},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> list[str]:
        async with running_worker(store, lambda: registry, poll=60) as worker:
            await handing_over(worker)
            receipts = [await store.check_in(new_completion("slow")) for _ in range(2)]
            assert all(receipt.handed_off for receipt in receipts)
            await worker.stop(grace=5)
            assert worker.completed == 2
            return [(await settled(store, r.id, 1))["handler_runs"][0]["status"] for r in receipts]

    try:
        assert asyncio.run(main()) == ["succeeded"] * 2
    finally:
        store.close()
    assert len(read_lines(trace)) == 2


def test_sync_and_isolated_runs_share_the_threads_limit(tmp_path: Path) -> None:
    """One thread slot, two isolated and four sync runs of a 0.2 s handler: never two at
    once, whichever kind holds the slot."""
    spans = tmp_path / "spans.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "inline",
            "type": "support.handlers:Spans",
            "properties": {"path": str(spans), "seconds": 0.2},
        },
        {
            "name": "child",
            "type": "support.handlers:Spans",
            "isolation": "process",
            "properties": {"path": str(spans), "seconds": 0.2},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> None:
        async with running_worker(store, lambda: registry, threads=1, poll=60) as worker:
            await handing_over(worker)
            receipts = [await store.check_in(new_completion("inline", "child")) for _ in range(2)]
            receipts += [await store.check_in(new_completion("inline")) for _ in range(2)]
            for receipt in receipts:
                await settled(store, receipt.id, 30)
            await worker.stop(grace=5)

    try:
        asyncio.run(main())
    finally:
        store.close()
    intervals = [tuple(map(float, line.split())) for line in read_lines(spans)]
    assert len(intervals) == 6
    at_once = max(sum(s <= t < e for s, e in intervals) for t, _ in intervals)
    assert at_once == 1, intervals


def _alive(store: Store, worker_id: str) -> Any:
    """Register ``worker_id`` as a live process (its heartbeat row): nobody else takes its
    leases back."""
    return store.start_heartbeat(NodeIdentity(worker_id, "here", None, 1, None), lambda: True)


def test_runs_leased_to_a_worker_that_never_received_them_wait_again_once_their_lease_ends(
    tmp_path: Path,
) -> None:
    # A claim whose COMMIT got no answer: PostgreSQL stored it, the worker never saw the
    # runs it leased. The worker is alive, so nobody else takes them back.
    trace = tmp_path / "trace.log"
    registry = _appender(tmp_path, trace)
    clock = ManualClock()
    store = Store(f"sqlite:///{tmp_path / 'w.db'}", clock=clock)

    async def main() -> list[dict[str, Any]]:
        receipts = [await store.check_in(new_completion("append")) for _ in range(3)]
        await _alive(store, "w1")
        lost = await store.claim("w1", 10, {"append": 1.0})
        assert len(lost) == 3
        async with running_worker(
            store, lambda: registry, local=False, poll=60, worker_id="w1"
        ) as worker:
            assert await worker.take_back_forgotten() == 0, "their lease has not ended"
            clock.advance(2)
            assert await worker.take_back_forgotten() == 3
            return [await settled(store, receipt.id) for receipt in receipts]

    try:
        details = asyncio.run(main())
    finally:
        store.close()
    runs = [detail["handler_runs"][0] for detail in details]
    assert [(run["status"], run["total_attempts"]) for run in runs] == [("succeeded", 1)] * 3
    assert sorted(read_lines(trace)) == sorted(f"{detail['id']} 1" for detail in details)


def test_a_stopping_worker_gives_back_the_runs_leased_to_it_that_it_never_received(
    tmp_path: Path,
) -> None:
    # Without this they would wait for their lease, then count as a lost attempt of a
    # process that is gone: with one attempt allowed, dead without ever running.
    registry = _appender(tmp_path, tmp_path / "trace.log")
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> str:
        receipt = await store.check_in(new_completion("append", max_attempts=1))
        await _alive(store, "w1")
        assert len(await store.claim("w1", 10, {"append": 60.0})) == 1, "behind its back"
        async with running_worker(store, lambda: registry, local=False, worker_id="w1") as w:
            await w.stop(grace=1)
        return receipt.runs[0].id

    try:
        run_id = asyncio.run(main())
        with store._engine.connect() as connection:
            row = connection.execute(select(runs).where(runs.c.id == run_id)).one()
    finally:
        store.close()
    assert (row.status, row.worker, row.attempts) == ("pending", None, 0)


def test_a_run_in_progress_past_its_lease_is_not_given_back(tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "slow",
            "type": "support.handlers:Sleeps",
            "timeout": 30,
            "properties": {"path": str(trace), "seconds": 1.0},
        },
    )
    clock = ManualClock()
    store = Store(f"sqlite:///{tmp_path / 'w.db'}", clock=clock)

    async def main() -> dict[str, Any]:
        async with running_worker(store, lambda: registry, poll=60, worker_id="w1") as worker:
            await _alive(store, "w1")
            await handing_over(worker)
            receipt = await store.check_in(new_completion("slow"))
            assert receipt.handed_off, "this worker runs it"
            clock.advance(3600)
            assert await store.leased_to("w1", ended=True) == [receipt.runs[0].id], "past lease"
            assert await worker.take_back_forgotten() == 0
            return await settled(store, receipt.id)

    try:
        detail = asyncio.run(main())
    finally:
        store.close()
    [run] = detail["handler_runs"]
    assert (run["status"], run["total_attempts"]) == ("succeeded", 1)
    assert read_lines(trace) == [f"{detail['id']} 1"]


class _OutageAtFinish:
    """The store, but the first ``failures`` writes of outcomes fail as in an outage."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.failures = failures

    async def claim(
        self, worker: str, limit: int, leases: dict[str, float], dead: Sequence[str] = ()
    ) -> list[ClaimedRun]:
        return await self.store.claim(worker, limit, leases, dead)

    async def finish(self, outcomes: Sequence[RunOutcome]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("the database cannot be reached (connection refused)")
        await self.store.finish(outcomes)

    async def give_back(self, worker: str, run_ids: Sequence[str]) -> int:
        return await self.store.give_back(worker, run_ids)

    async def hold(self, worker: str, run_ids: Sequence[str]) -> int:
        return await self.store.hold(worker, run_ids)

    async def leased_to(self, worker: str, *, ended: bool = False) -> list[str]:
        return await self.store.leased_to(worker, ended=ended)

    async def dead_nodes(self) -> list[str]:
        return await self.store.dead_nodes()

    def set_local_worker(self, worker: LocalWorker | None) -> None:
        self.store.set_local_worker(worker)


def test_an_outcome_that_could_not_be_stored_is_stored_once_the_database_is_back(
    tmp_path: Path,
) -> None:
    """The database fails the first two writes of a run's outcome: the worker keeps
    trying, the run ends succeeded instead of staying "running" until the process
    ends, and the handler ran once."""
    trace = tmp_path / "trace.log"
    registry = _appender(tmp_path, trace)
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    flaky = _OutageAtFinish(store, failures=2)

    async def main() -> dict[str, Any]:
        async with running_worker(
            store, lambda: registry, poll=60, record_retry=0.01, through=flaky
        ) as worker:
            await handing_over(worker)
            receipt = await store.check_in(new_completion("append"))
            assert receipt.handed_off
            try:
                return await settled(store, receipt.id, 5)
            finally:
                await worker.stop(grace=1)

    try:
        detail = asyncio.run(main())
    finally:
        store.close()
    [run] = detail["handler_runs"]
    assert (run["status"], run["total_attempts"]) == ("succeeded", 1)
    assert flaky.failures == 0
    assert len(read_lines(trace)) == 1


def test_a_stop_during_an_outage_gives_up_storing_and_says_what_happens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trace = tmp_path / "trace.log"
    registry = _appender(tmp_path, trace)
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    down = _OutageAtFinish(store, failures=10**6)

    async def main() -> float:
        async with running_worker(
            store, lambda: registry, poll=60, record_retry=0.01, through=down
        ) as worker:
            await handing_over(worker)
            await store.check_in(new_completion("append"))
            while down.failures > 10**6 - 3:  # it has tried a few times
                await asyncio.sleep(0.01)
            started = time.perf_counter()
            await worker.stop(grace=5)
            return time.perf_counter() - started

    try:
        took = asyncio.run(main())
    finally:
        store.close()
    assert took < 1, "the stop does not wait out the outage"
    assert "how 1 run ended was not stored" in caplog.text
    assert "it runs again once this process is gone" in caplog.text
    assert len(read_lines(trace)) == 1


def test_a_run_jobhooks_cannot_start_fails_and_is_retried_not_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machine refuses to start an isolated handler's child process (a process limit):
    each attempt fails saying why, and the run ends dead after its attempts instead of
    staying "running" while the worker lives."""
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "child",
            "type": "support.handlers:Appender",
            "isolation": "process",
            "max_attempts": 2,
            "backoff": 0.01,
            "properties": {"path": str(trace)},
        },
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(isolation._spawn, "Process", refuse)
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> dict[str, Any]:
        async with running_worker(store, lambda: registry):
            receipt = await store.check_in(new_completion("child", max_attempts=2))
            return await settled(store, receipt.id)

    try:
        [run] = asyncio.run(main())["handler_runs"]
    finally:
        store.close()
    assert (run["status"], run["attempts"]) == ("dead", 2)
    assert "jobhooks could not run the handler" in run["last_error"]
    assert "Resource temporarily unavailable" in run["last_error"]
    assert not trace.exists()


def test_a_sync_run_no_thread_can_be_started_for_fails_and_is_retried_not_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process may start no more threads (a thread or process limit, or threads held
    by handlers that never returned): each attempt fails saying why, and the run ends dead
    after its attempts instead of staying "running" with its slot held."""
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "sync",
            "type": "support.handlers:Appender",
            "max_attempts": 2,
            "backoff": 0.01,
            "properties": {"path": str(trace)},
        },
    )
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name == "jobhooks-handler":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threads, "_SHARED", threads.HandlerThreads())  # none idle
    monkeypatch.setattr(threading.Thread, "start", refuse)
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> tuple[dict[str, Any], int]:
        async with running_worker(store, lambda: registry) as worker:
            receipt = await store.check_in(new_completion("sync", max_attempts=2))
            return await settled(store, receipt.id, 5), worker.busy

    try:
        detail, busy = asyncio.run(main())
    finally:
        store.close()
    [run] = detail["handler_runs"]
    assert (run["status"], run["attempts"]) == ("dead", 2)
    assert run["last_error"] == (
        'jobhooks could not run the handler: RuntimeError("can\'t start new thread")'
    )
    assert busy == 0
    assert not trace.exists()


def test_a_stop_gives_back_the_runs_it_had_not_started(tmp_path: Path) -> None:
    """Four runs of a 0.3 s handler (one attempt allowed) wait for one thread when the
    worker stops: the one running finishes; the three that never started are given back
    as if never taken (no attempt used, no "lost" history), and the next worker runs each
    once, instead of finding them dead."""
    trace = tmp_path / "trace.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "slow",
            "type": "support.handlers:Sleeps",
            "max_attempts": 1,
            "properties": {"path": str(trace), "seconds": 0.3},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with running_worker(store, lambda: registry, threads=1, poll=60) as first:
            await handing_over(first)
            receipts = [
                await store.check_in(new_completion("slow", max_attempts=1)) for _ in range(4)
            ]
            assert all(receipt.handed_off for receipt in receipts)
            await first.stop(grace=5)
        after_stop = [
            (await store.reads.completion(r.id)).as_json()["handler_runs"][0]  # type: ignore[union-attr]
            for r in receipts
        ]
        async with running_worker(store, lambda: registry, local=False):
            settled_runs = [(await settled(store, r.id))["handler_runs"][0] for r in receipts]
        return after_stop, settled_runs

    try:
        after_stop, settled_runs = asyncio.run(main())
    finally:
        store.close()
    assert [run["status"] for run in after_stop] == ["succeeded", "pending", "pending", "pending"]
    assert [run["attempts"] for run in after_stop] == [1, 0, 0, 0]
    assert all(run["attempt_history"] == [] for run in after_stop[1:])
    assert [run["status"] for run in settled_runs] == ["succeeded"] * 4
    assert [len(run["attempt_history"]) for run in settled_runs] == [1] * 4
    assert len(read_lines(trace)) == 4, "each ran once"


def test_a_stop_gives_back_isolated_runs_waiting_for_a_slot(tmp_path: Path) -> None:
    spans = tmp_path / "spans.log"
    registry = build_registry(
        tmp_path,
        {
            "name": "child",
            "type": "support.handlers:Spans",
            "isolation": "process",
            "max_attempts": 1,
            "properties": {"path": str(spans), "seconds": 0.2},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> list[dict[str, Any]]:
        async with running_worker(store, lambda: registry, threads=1, poll=60) as worker:
            await handing_over(worker)
            receipts = [
                await store.check_in(new_completion("child", max_attempts=1)) for _ in range(3)
            ]
            assert all(receipt.handed_off for receipt in receipts)
            await asyncio.sleep(0.05)  # the first has the slot, the others wait for it
            await worker.stop(grace=30)
            return [
                (await store.reads.completion(r.id)).as_json()["handler_runs"][0]  # type: ignore[union-attr]
                for r in receipts
            ]

    try:
        runs = asyncio.run(main())
    finally:
        store.close()
    assert [(run["status"], run["attempts"]) for run in runs] == [
        ("succeeded", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    assert len(read_lines(spans)) == 1


@pytest.mark.parametrize(
    "handler_type",
    [
        "AsyncRaisesCancelled",
        "AsyncAwaitsCancelled",
        "RaisesUnprintable",
        "RaisesWithBrokenNotes",
        "RaisesUnstorable",
        "ReturnsUnstorable",
    ],
)
def test_a_run_whose_handler_breaks_the_rules_fails_is_retried_and_frees_its_slot(
    tmp_path: Path, handler_type: str
) -> None:
    """A CancelledError the handler raises itself, an exception that cannot be shown, or
    an error text no database stores as it is (a NUL, a lone surrogate): each attempt
    fails like any other (retried, then dead), never left "running" with its slot held."""
    registry = build_registry(
        tmp_path,
        {
            "name": "bad",
            "type": f"support.misbehaving:{handler_type}",
            "max_attempts": 2,
            "backoff": 0.01,
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> tuple[dict[str, Any], int]:
        async with running_worker(store, lambda: registry) as worker:
            receipt = await store.check_in(new_completion("bad", max_attempts=2))
            detail = await settled(store, receipt.id, 5)
            deadline = time.monotonic() + 5
            while worker.busy:
                assert time.monotonic() < deadline, "a slot is still held"
                await asyncio.sleep(0.01)
            return detail, worker.busy

    try:
        detail, busy = asyncio.run(main())
    finally:
        store.close()
    [run] = detail["handler_runs"]
    assert (run["status"], run["attempts"]) == ("dead", 2)
    assert [a["outcome"] for a in run["attempt_history"]] == ["failed", "failed"]
    assert busy == 0


def test_a_stop_leaves_no_isolated_child_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    registry = build_registry(
        tmp_path,
        {
            "name": "hangs",
            "type": "support.misbehaving:HangsWithPid",
            "isolation": "process",
            "timeout": 60,
            "properties": {"path": str(pid_file)},
        },
    )
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")

    async def main() -> tuple[int, dict[str, Any]]:
        async with running_worker(store, lambda: registry, poll=60) as worker:
            await handing_over(worker)
            receipt = await store.check_in(new_completion("hangs"))
            deadline = time.monotonic() + 30
            while not (pid_file.exists() and pid_file.read_text()):
                assert time.monotonic() < deadline, "the handler never ran"
                await asyncio.sleep(0.02)
            await worker.stop(grace=0.2)
            found = await store.reads.completion(receipt.id)
            assert found is not None
            return int(pid_file.read_text()), found.as_json()

    try:
        child, detail = asyncio.run(main())
    finally:
        store.close()
    assert process_ended(child), "the child outlived its worker's stop"
    [run] = detail["handler_runs"]
    assert run["status"] == "failed"
    assert run["last_error"] == "killed as its worker stopped, before the handler ended"


@pytest.mark.parametrize("taken_over", [True, False], ids=["taken over", "nobody took them"])
def test_runs_that_waited_while_the_worker_was_stopped_are_not_started_after(
    tmp_path: Path, taken_over: bool
) -> None:
    """Three runs on one thread; while the first holds it, this worker is stopped
    (SIGSTOP) long enough to be taken for gone, though not past their lease. Taken over
    and finished by another worker meanwhile, the two that waited are not started here
    when it resumes: each ran once, there. With nobody taking them, they are given back
    rather than started, and each runs once, on its first attempt."""
    trace = tmp_path / "trace.log"
    gate = tmp_path / "gate"
    registry = build_registry(
        tmp_path,
        {
            "name": "gated",
            "type": "support.misbehaving:WaitsForGate",
            "timeout": 30,  # a lease (31 s) longer than the stop
            "properties": {"path": str(trace), "gate": str(gate)},
        },
    )
    clock = ManualClock()
    store = Store(f"sqlite:///{tmp_path / 'w.db'}", clock=clock)

    async def main() -> list[dict[str, Any]]:
        await _alive(store, "w1")
        poll = 60 if taken_over else 0.05
        async with running_worker(
            store, lambda: registry, threads=1, poll=poll, worker_id="w1", clock=clock
        ) as worker:
            await handing_over(worker)
            receipts = [await store.check_in(new_completion("gated")) for _ in range(3)]
            # Handed over, or (polling) claimed: either way taken before the stop.
            assert not taken_over or all(receipt.handed_off for receipt in receipts)
            deadline = time.monotonic() + 5
            while not read_lines(trace):
                assert time.monotonic() < deadline, "the first run never started"
                await asyncio.sleep(0.01)
            clock.advance(STALE_AFTER + 2)  # stopped: silent long enough to be taken over
            if taken_over:
                taken = await store.claim("w2", 10, {"gated": 31.0}, dead=["w1"])
                assert len(taken) == 3
                now = clock()
                await store.finish(
                    [
                        RunOutcome(run.id, "w2", run.number, RunStatus.SUCCEEDED, now, now, now)
                        for run in taken
                        if run.id != receipts[0].runs[0].id
                    ]
                )
            gate.touch()  # resumed: the first run ends, its thread is free
            if not taken_over:
                return [await settled(store, receipt.id) for receipt in receipts]
            deadline = time.monotonic() + 5
            while worker.busy:
                assert time.monotonic() < deadline, "runs still held"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # room for a wrongly started run to show
            return [await settled(store, receipt.id) for receipt in receipts[1:]]

    try:
        details = asyncio.run(main())
    finally:
        store.close()
    if not taken_over:
        runs = [detail["handler_runs"][0] for detail in details]
        assert [(run["status"], run["total_attempts"]) for run in runs] == [("succeeded", 1)] * 3
        assert sorted(read_lines(trace)) == sorted(f"{detail['id']} 1" for detail in details)
        return
    assert len(read_lines(trace)) == 1, "only the run that held the thread ran here"
    for detail in details:
        [run] = detail["handler_runs"]
        assert run["status"] == "succeeded"
        history = [(a["worker"], a["outcome"]) for a in run["attempt_history"]]
        assert history == [("w1", "lost"), ("w2", "succeeded")], "w1 reported nothing"
