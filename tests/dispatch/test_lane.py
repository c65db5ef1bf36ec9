"""The lane of synchronous handlers: runs that end together come back together, a run
that times out frees its slot at once, and the slot limit holds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable

import pytest

from jobhooks import JobCompleteContext, JobCompleteHandler
from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.lane import Ended, SyncLane
from jobhooks.dispatch.slots import ThreadSlots
from jobhooks.dispatch.threads import HandlerThreads
from jobhooks.registry import RegisteredHandler
from jobhooks.registry.matching import DeliveryPolicy
from jobhooks.testing import sample_context


class WaitsForGate(JobCompleteHandler):
    """Blocks its thread until ``gate`` is set; counts how many run at once."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def run_handler(self, context: JobCompleteContext) -> bool:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self.gate.wait(10)
        finally:
            with self.lock:
                self.running -= 1


class ReturnsACoroutine(JobCompleteHandler):
    """A synchronous run_handler that hands back a coroutine to await."""

    def run_handler(self, context: JobCompleteContext) -> Awaitable[bool]:
        async def later() -> bool:
            await asyncio.sleep(0)
            return True

        return later()


def _registered(handler: JobCompleteHandler, timeout: float = 5.0) -> RegisteredHandler:
    return RegisteredHandler(
        "h", type(handler).__name__, handler, None, DeliveryPolicy(timeout=timeout, backoff=7)
    )


def _wait_until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


def test_runs_that_end_together_come_back_in_one_batch() -> None:
    handler = WaitsForGate()
    threads = HandlerThreads()
    batches: list[list[Ended[int]]] = []

    async def main() -> None:
        lane: SyncLane[int] = SyncLane(ThreadSlots(4), threads, batches.append)
        for number in range(4):
            lane.start(number, _registered(handler), sample_context())
        _wait_until(lambda: handler.running == 4)
        handler.gate.set()
        # The loop is held here until every thread has ended: one wake-up hands all back.
        _wait_until(lambda: threads.idle == 4)
        await lane.idle()

    asyncio.run(main())
    assert len(batches) == 1
    assert sorted(number for number, _outcome, _backoff in batches[0]) == [0, 1, 2, 3]
    assert all(outcome.succeeded and backoff == 7 for _n, outcome, backoff in batches[0])


def test_no_more_run_at_once_than_there_are_slots() -> None:
    handler = WaitsForGate()
    batches: list[list[Ended[int]]] = []

    async def main() -> None:
        lane: SyncLane[int] = SyncLane(ThreadSlots(2), HandlerThreads(), batches.append)
        for number in range(6):
            lane.start(number, _registered(handler), sample_context())
        _wait_until(lambda: handler.running == 2)
        assert lane.busy == 6
        handler.gate.set()
        await lane.idle()

    asyncio.run(main())
    assert handler.most == 2
    ended = [number for batch in batches for number, _outcome, _backoff in batch]
    assert sorted(ended) == list(range(6))


def test_a_timed_out_run_frees_its_slot_at_once_and_its_late_end_is_ignored() -> None:
    hung = WaitsForGate()
    quick = WaitsForGate()
    quick.gate.set()
    batches: list[list[Ended[str]]] = []

    async def main() -> None:
        lane: SyncLane[str] = SyncLane(ThreadSlots(1), HandlerThreads(), batches.append)
        lane.start("hung", _registered(hung, timeout=0.2), sample_context())
        lane.start("next", _registered(quick), sample_context())
        await lane.idle()
        hung.gate.set()  # the hung thread returns True now: too late to count
        _wait_until(lambda: hung.running == 0)
        await asyncio.sleep(0.05)  # room for its late result to arrive (and be dropped)

    started = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - started < 2
    ended = {name: outcome for batch in batches for name, outcome, _backoff in batch}
    assert set(ended) == {"hung", "next"}, "each run reported once"
    assert ended["hung"].error == "timed out after 0.2 s"
    assert ended["next"].succeeded, "it ran on the slot the hung run gave up"
    assert ended["next"].started_at >= ended["hung"].started_at + 0.2


def test_a_sync_run_handler_that_returns_a_coroutine_is_awaited() -> None:
    outcome = asyncio.run(run_attempt(_registered(ReturnsACoroutine()), sample_context()))
    assert outcome.succeeded, outcome.error


def test_a_closed_lane_starts_nothing_more_and_returns_what_waited() -> None:
    handler = WaitsForGate()
    batches: list[list[Ended[int]]] = []

    async def main() -> list[int]:
        lane: SyncLane[int] = SyncLane(ThreadSlots(1), HandlerThreads(), batches.append)
        for number in range(3):
            lane.start(number, _registered(handler), sample_context())
        _wait_until(lambda: handler.running == 1)
        unstarted = lane.close()
        handler.gate.set()
        await lane.idle()
        with pytest.raises(RuntimeError, match="closed"):
            lane.start(9, _registered(handler), sample_context())
        return unstarted

    assert sorted(asyncio.run(main())) == [1, 2]
    assert [number for batch in batches for number, _o, _b in batch] == [0]
    assert handler.most == 1
