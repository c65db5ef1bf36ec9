"""The worker: takes due runs under a lease, runs their handlers, records outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from functools import partial
from typing import Any

from jobhooks.dispatch.execute import is_async
from jobhooks.dispatch.isolation import kill_children, run_as_registered
from jobhooks.dispatch.lane import Ended, SyncLane
from jobhooks.dispatch.outcome import CANCEL_GRACE, Outcome
from jobhooks.dispatch.retry import decide
from jobhooks.dispatch.slots import Lapsed, SlotsClosed, ThreadSlots
from jobhooks.dispatch.threads import handler_threads
from jobhooks.errors import DatabaseLost, StoreError
from jobhooks.intake.planning import LeasePolicy
from jobhooks.metrics import Metrics
from jobhooks.platform.client import PlatformClients
from jobhooks.registry.matching import RegisteredHandler, Registry
from jobhooks.sdk.context import JobCompleteContext
from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.store.nodes import HEARTBEAT_EVERY, STALE_AFTER
from jobhooks.store.ports import WorkerStore
from jobhooks.store.records import ClaimedRun, RunOutcome, RunStatus

__all__ = ["Worker", "build_context"]

logger = logging.getLogger("jobhooks.worker")

CLAIM_GATHER = 0.02
"""Seconds to wait for more free slots before claiming only a few runs."""
RECORD_RETRY = 0.5
"""Seconds before storing outcomes again after the database failed (doubling each time)."""
RECORD_RETRY_LONGEST = 30.0
LEASES_CHECK_EVERY = 30.0
"""Seconds between two looks for runs leased to this worker that it never received."""
STALL = STALE_AFTER / 2
"""Seconds the worker's event loop may not run (the process stopped: SIGSTOP, a paused
virtual machine) before the runs it took count as possibly lost: other nodes take the
runs of a process silent for STALE_AFTER."""


def _runs(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def build_context(run: ClaimedRun, clients: PlatformClients) -> JobCompleteContext:
    """The handler's context for a claimed run (a digest's: its newest completion's,
    with every completion in ``group``)."""
    members = tuple(
        _context(fields, run.attempt, clients, ()) for fields in run.fields.get("group", ())
    )
    return _context(run.fields, run.attempt, clients, members)


def _context(
    fields: dict[str, Any],
    attempt: int,
    clients: PlatformClients,
    group: tuple[JobCompleteContext, ...],
) -> JobCompleteContext:
    return JobCompleteContext(
        agent_id=fields["agent_id"],
        username=fields.get("username", ""),
        client_machine=fields.get("client_machine", ""),
        job_result=JobResult(fields["job_result"]),
        job_id=fields["job_id"],
        job_type=fields["job_type"],
        job_type_id=fields["job_type_id"],
        operation_type=OperationType(fields.get("operation_type", 0)),
        certificate_id=fields.get("certificate_id"),
        request_timestamp=fields.get("request_timestamp"),
        current_retry_count=fields["current_retry_count"],
        message=fields.get("message"),
        completion_id=fields["completion_id"],
        source=fields.get("source", "check-in"),
        job_history_id=fields.get("job_history_id"),
        attempt=attempt,
        trigger=fields.get("trigger"),
        group=group,
        client=clients.client,
        async_client=clients.async_client,
    )


class Worker:
    """Runs handlers for due runs, at most ``concurrency`` at a time.

    Runs reach it two ways: a check-in in the same process hands them over in
    the transaction that stores them (no claim needed), and a claim loop
    leases due runs (retries, runs stored by other processes, runs whose
    worker died) whenever there is room.
    """

    def __init__(
        self,
        store: WorkerStore,
        registry: Callable[[], Registry],
        clients: PlatformClients,
        leases: LeasePolicy,
        *,
        concurrency: int = 32,
        threads: int = 8,
        poll_interval: float = 1.0,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        record_retry: float = RECORD_RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._store = store
        self._registry = registry
        self._clients = clients
        self._capacity = concurrency
        self._claim_batch = max(1, min(32, concurrency // 4))
        self._leases = leases
        self._poll_interval = poll_interval
        self._metrics = metrics
        self._slots = ThreadSlots(threads)
        self._clock = clock
        """What stalls are timed with."""
        self._ticked = clock()
        self._stall_ended: float | None = None
        """When the loop last ran again after a stall (see :meth:`_held_since`)."""
        self._ticker: asyncio.Task[None] | None = None
        self._lane: SyncLane[ClaimedRun] = SyncLane(
            self._slots, handler_threads(), self._ended, self._lapsed, self._held_since
        )
        self._lock = threading.Lock()
        self._busy = 0  # runs started or reserved; guarded by _lock
        self._wake = asyncio.Event()
        self._backlog = True
        self._timers: list[float] = []
        """When runs fall due that this process knows of (retries, digests closing): a heap."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._record_retry = record_retry
        self._random = random.Random()
        self._dead: list[str] = []
        self._dead_checked = -HEARTBEAT_EVERY
        self._held: dict[str, int] = {}
        """The runs this worker received and has not yet recorded or given back, with how
        many of their attempts (a retry may be received before the last one is recorded)."""
        self._leases_checked = time.monotonic()
        self._lapsing: list[ClaimedRun] = []
        """Runs whose lease ran out while they waited for a slot, to give back together."""
        self.completed = 0

    # -- slots -----------------------------------------------------------------

    def reserve(self, count: int) -> tuple[str, int]:
        """Reserve up to ``count`` slots for runs handed over by a check-in
        (a negative count gives slots back). Called from the writer thread."""
        with self._lock:
            if count < 0:
                self._busy += count
                return self.id, 0
            granted = 0 if self._stopping else max(0, min(count, self._capacity - self._busy))
            self._busy += granted
        if granted < count:
            self._backlog = True
        return self.id, granted

    def deliver(self, runs: Sequence[ClaimedRun]) -> None:
        """Start runs reserved by :meth:`reserve`, once committed. Thread-safe."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._start_all, runs, self._clock())

    def wake_at(self, when: float) -> None:
        """Look for due runs at ``when`` (a digest closes then). Thread-safe."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._look_at, when)

    def _look_at(self, when: float) -> None:
        if self._timers and when == self._timers[0]:
            return
        heapq.heappush(self._timers, when)
        if when == self._timers[0]:
            self._wake.set()

    def _start_all(self, runs: Sequence[ClaimedRun], taken: float) -> None:
        """Start runs taken at ``taken`` (the store's time: when this worker asked for
        them, or when a check-in handed them over), unless this process may have lost
        them since (see :meth:`_lapsed`)."""
        for run in runs:
            self._held[run.id] = self._held.get(run.id, 0) + 1
        if self._stopping:  # handed over as the worker stopped: not to be started here
            self._spawn(self._give_back(list(runs)))
            return
        registry = self._registry()
        held = self._held_since(taken)
        unstarted: list[Ended[ClaimedRun]] = []
        unregistered: list[ClaimedRun] = []
        for run in runs:
            registered = registry.get(run.handler)
            if registered is None:
                unregistered.append(run)
                continue
            if not held:  # this process was stopped (or cut off) since it took them
                self._lapsed(run)
                continue
            try:
                context = build_context(run, self._clients)
            except Exception as exc:
                error = f"cannot build the context: {exc!r}"
                unstarted.append((run, Outcome(False, 0.0, error), registered.policy.backoff))
                continue
            if registered.policy.isolation == "process" or is_async(registered):
                self._spawn(self._execute(run, registered, context, taken))
            else:
                self._lane.start(run, registered, context, taken)
        if unregistered:
            self._release(len(unregistered))
            self._spawn(self._hand_back(unregistered, hold=True))
        if unstarted:
            self._ended(unstarted)

    def _lapsed(self, run: ClaimedRun) -> None:
        """``run`` may be lost to this process: it was stopped since it took the run (see
        :meth:`_held_since`) long enough for another node to take it over, even finish
        it. So it is given back rather than started (the store leaves it alone if another
        worker holds it, see :meth:`_hand_back`)."""
        if not self._lapsing:
            asyncio.get_running_loop().call_soon(self._give_back_lapsed)
        self._lapsing.append(run)

    def _give_back_lapsed(self) -> None:
        runs, self._lapsing = self._lapsing, []
        self._release(len(runs))
        logger.warning(
            "%s not started: this process was stopped for %g s or more since it took them; "
            "given back, unless another worker took them over meanwhile",
            _runs(len(runs)),
            STALL,
        )
        self._spawn(self._hand_back(runs))

    async def _hand_back(self, runs: list[ClaimedRun], *, hold: bool = False) -> None:
        """Give back runs that were not started and hold no slot: those still leased to
        this worker wait again as if never taken, the store leaves the others alone.
        With ``hold``, their handler is not registered here (removed, or disabled, by a
        reload): they wait, with no attempt used, until a reload makes it valid again.
        If that fails they are given back later as leases this worker no longer knows of
        (:meth:`take_back_forgotten`)."""
        self._let_go(run.id for run in runs)
        untake = self._store.hold if hold else self._store.give_back
        try:
            count = await untake(self.id, [run.id for run in runs])
        except StoreError as exc:
            logger.debug("giving back %s not started failed (%s)", _runs(len(runs)), exc)
            return
        except Exception:
            logger.exception("giving back %s not started failed", _runs(len(runs)))
            return
        if count and hold:
            logger.warning(
                "%s of %s held: not registered here (removed or disabled by a reload?); no "
                "attempt is used, and they run once a reload makes the registration valid",
                _runs(count),
                ", ".join(sorted({repr(run.handler) for run in runs})),
            )
        elif count:
            self.poke()

    def _let_go(self, run_ids: Iterable[str]) -> None:
        """One attempt of each of these runs is recorded or given back."""
        for run_id in run_ids:
            left = self._held.pop(run_id, 0) - 1
            if left > 0:
                self._held[run_id] = left

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, count: int) -> None:
        with self._lock:
            self._busy -= count
        self._wake.set()

    # -- loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run due runs until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._ticked = self._clock()
        self._ticker = asyncio.create_task(self._ticking(), name="jobhooks-worker-tick")
        logger.info("worker %s started (concurrency %d)", self.id, self._capacity)
        while not self._stopping:
            if time.monotonic() - self._leases_checked >= LEASES_CHECK_EVERY:
                await self.take_back_forgotten()
            if self._backlog and 0 < self._capacity - self._busy < self._claim_batch:
                # A few slots free while runs wait: let more free up, so one
                # claim (one write) takes many runs rather than one each.
                await asyncio.sleep(CLAIM_GATHER)
            with self._lock:
                free = self._capacity - self._busy
                if free > 0 and self._backlog:
                    self._busy += free
                else:
                    free = 0
            if free:
                self._backlog = False
                try:
                    dead = await self._gone()
                    leases = self._leases.leases(self._registry())
                    taken = self._clock()
                    claimed = await self._store.claim(self.id, free, leases, dead)
                except StoreError as exc:
                    logger.debug("claiming runs failed (%s); trying again shortly", exc)
                    claimed = []
                except Exception:
                    logger.exception("claiming runs failed; trying again shortly")
                    claimed = []
                with self._lock:
                    self._busy -= free - len(claimed)
                self._start_all(claimed, taken)
                if len(claimed) == free:
                    self._backlog = True
                    await asyncio.sleep(0)
                    continue
            self._wake.clear()
            timeout = self._poll_interval
            if self._timers:
                timeout = max(0.0, min(timeout, self._timers[0] - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._backlog = True
                now = time.time()
                while self._timers and self._timers[0] <= now:
                    heapq.heappop(self._timers)

    async def _gone(self) -> list[str]:
        """The processes that are gone, looked up every few seconds: their runs come first."""
        now = time.monotonic()
        if now - self._dead_checked >= HEARTBEAT_EVERY:
            self._dead_checked = now
            try:
                self._dead = await self._store.dead_nodes()
            except Exception:
                logger.debug("looking for processes that are gone failed", exc_info=True)
        return self._dead

    async def take_back_forgotten(self, *, stopping: bool = False) -> int:
        """Give back the runs leased to this worker that it never received, once their lease
        has ended (``stopping``: whatever their lease); returns how many. A claim (or a
        check-in handing runs over) whose COMMIT got no answer may have leased runs after
        all, and nobody takes a live process's runs back: without this they would wait
        until the process stops, and then count as lost attempts."""
        self._leases_checked = time.monotonic()
        try:
            leased = await self._store.leased_to(self.id, ended=not stopping)
            forgotten = [run_id for run_id in leased if run_id not in self._held]
            given = await self._store.give_back(self.id, forgotten) if forgotten else 0
        except StoreError as exc:
            logger.debug("looking for runs leased but never received failed (%s)", exc)
            return 0
        except Exception:
            logger.exception("looking for runs leased but never received failed")
            return 0
        if given:
            logger.warning(
                "%s leased to this worker but never received (a write whose commit got no "
                "answer) wait again",
                _runs(given),
            )
            self.poke()
        return given

    def poke(self) -> None:
        """Look for due runs now (for example after a replay)."""
        self._backlog = True
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking runs and give back those not started (they wait again, as if never
        taken); wait up to ``grace`` seconds for those running."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.cancel()
        unstarted = self._lane.close()
        self._slots.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._give_back(unstarted)
                await self._lane.idle()
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
        if self._tasks and kill_children():
            # Isolated attempts still running: their children must not outlive the worker.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_GRACE):
                    while self._tasks:
                        await asyncio.wait(set(self._tasks))
        await self.take_back_forgotten(stopping=True)

    @property
    def busy(self) -> int:
        """Runs in progress or reserved."""
        return self._busy

    # -- runs -------------------------------------------------------------------

    async def _execute(
        self,
        run: ClaimedRun,
        registered: RegisteredHandler,
        context: JobCompleteContext,
        taken: float,
    ) -> None:
        """One run of an async or isolated handler, taken at ``taken``, as a task of its
        own; not started if this process may have lost it since (see :meth:`_lapsed`)."""
        try:
            outcome = await run_as_registered(
                registered, context, self._slots, partial(self._lost_since, taken)
            )
        except SlotsClosed:  # the worker stopped while it waited for a slot
            await self._give_back([run])
            return
        except Lapsed:
            self._lapsed(run)
            return
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker is cancelled itself: as at a stop, its run is not failed
            logger.exception("running handler %s for run %s failed", run.handler, run.id)
            outcome = Outcome(False, 0.0, f"jobhooks could not run the handler: {exc!r}")
        except Exception as exc:
            # Not the handler's failure (that is an outcome) but ours: recorded all the same,
            # so the run is retried rather than left held by this live process.
            logger.exception("running handler %s for run %s failed", run.handler, run.id)
            outcome = Outcome(False, 0.0, f"jobhooks could not run the handler: {exc!r}")
        await self._record([(run, outcome, registered.policy.backoff)])

    def _lost_since(self, taken: float) -> bool:
        return not self._held_since(taken)

    def _held_since(self, taken: float) -> bool:
        """Whether this process has run without a stall since ``taken`` (:attr:`_clock`):
        stopped for :data:`STALL` seconds or more, it may have been taken for gone and its
        runs taken over, even finished, by another node. (A process cut off from the
        database keeps running: that case is the heartbeat's, see the README.)"""
        self._tick()
        return self._stall_ended is None or self._stall_ended <= taken

    def _tick(self) -> None:
        now = self._clock()
        if now - self._ticked >= STALL:
            self._stall_ended = now
        self._ticked = now

    async def _ticking(self) -> None:
        while True:
            self._tick()
            await asyncio.sleep(1.0)

    async def _give_back(self, runs: list[ClaimedRun]) -> None:
        """Return runs taken but not started to the queue, so whoever runs them next
        starts at the same attempt (a run given up by a stopping worker is not a lost
        attempt). If that fails they are taken back once this process is gone, as a
        lost attempt each."""
        if not runs:
            return
        self._release(len(runs))
        try:
            # Every run this worker starts was leased to it, by a hand-off or a claim.
            await self._store.give_back(self.id, [run.id for run in runs])
        except StoreError as exc:
            logger.warning("%s not started could not be given back (%s)", _runs(len(runs)), exc)
        else:
            self._let_go(run.id for run in runs)
            logger.info("stopping: %s not started are waiting again", _runs(len(runs)))

    def _ended(self, ended: list[Ended[ClaimedRun]]) -> None:
        self._spawn(self._record(ended))

    async def _record(self, ended: list[Ended[ClaimedRun]]) -> None:
        """Free the runs' slots and store how they ended (one write for all, tried again
        while the database fails), then count them."""
        try:
            finished = time.time()
            outcomes = [
                self._conclude(run, outcome, backoff, finished) for run, outcome, backoff in ended
            ]
        except Exception:
            logger.exception("concluding %s failed", _runs(len(ended)))
            return
        finally:
            self._release(len(ended))
        if not await self._store_outcomes(outcomes):
            # Still leased to this live process: run again only once it is gone.
            return
        self._let_go(run.id for run, _outcome, _backoff in ended)
        for (run, outcome, _backoff), recorded in zip(ended, outcomes, strict=True):
            self.completed += 1
            if self._metrics is not None:
                self._metrics.count_attempt(run.handler, recorded.status, outcome.duration)
            # Look again when a retry is due rather than at the next poll.
            if recorded.status is RunStatus.FAILED:
                self._look_at(recorded.due_at)

    async def _store_outcomes(self, outcomes: list[RunOutcome]) -> bool:
        """Store outcomes, trying again (waiting longer each time) while the database fails:
        a run whose outcome is not stored stays held by this process, which is alive, so
        nobody else would take it back. Gives up when the worker stops or the database
        file is lost (the runs are then taken back, and run again, once this process is
        gone). Recording an outcome twice changes nothing, so trying again is safe."""
        wait = self._record_retry
        while True:
            try:
                await self._store.finish(outcomes)
                return True
            except DatabaseLost:
                return False  # reported by the store, once
            except StoreError as exc:
                if self._stopping:
                    logger.warning(
                        "how %s ended was not stored (%s); %s again once this process is gone",
                        _runs(len(outcomes)),
                        exc,
                        "it runs" if len(outcomes) == 1 else "they run",
                    )
                    return False
                # The store logs each change of its state once.
                logger.debug(
                    "storing %d outcomes failed (%s); again in %g s", len(outcomes), exc, wait
                )
            except Exception:
                logger.exception("storing how %s ended failed", _runs(len(outcomes)))
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), wait)
            wait = min(wait * 2, RECORD_RETRY_LONGEST)

    def _conclude(
        self, run: ClaimedRun, outcome: Outcome, backoff: float, finished: float
    ) -> RunOutcome:
        """What becomes of ``run`` after ``outcome``: done, a retry when, or dead."""
        if self._metrics is not None and run.number == 1:
            self._metrics.dispatch_latency.observe(max(0.0, outcome.started_at - run.created_at))
        if not outcome.succeeded:
            logger.warning(
                "handler %s failed on completion %s (attempt %d of %d): %s",
                run.handler,
                run.completion_id,
                run.attempt,
                run.max_attempts,
                outcome.error,
            )
        decision = decide(
            outcome.succeeded,
            run.attempt,
            run.max_attempts,
            backoff,
            finished,
            self._random.random(),
            outcome.final,
        )
        return RunOutcome(
            run_id=run.id,
            worker=run.worker,
            number=run.number,
            status=decision.status,
            due_at=decision.due_at,
            started_at=min(outcome.started_at, finished),
            finished_at=finished,
            error=outcome.error,
            traceback=outcome.traceback,
        )
