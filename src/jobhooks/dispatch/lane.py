"""The lane of synchronous handlers: runs started on handler threads as slots free up,
their ends handed back in batches.

A run of a synchronous handler needs no task of its own. The lane starts it on
a handler thread when a slot is free (:class:`~jobhooks.dispatch.slots.ThreadSlots`,
the worker's ``threads``), watches its timeout with a timer, and gives the
worker every run that ended in one wake-up of the event loop together, so
their outcomes are stored in one write. The timeout starts when the handler
starts: waiting for a slot is not part of the attempt. A run that times out
gives its slot back at once; its thread, when it ever returns, is ignored. A
run that waited for a slot is started only if its worker still holds it
(``held_since`` the time it was taken): otherwise the lane hands it to ``lapsed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

from jobhooks.dispatch.outcome import Outcome, awaitable, failed, returned, settle, timed_out
from jobhooks.dispatch.slots import ThreadSlots
from jobhooks.dispatch.threads import HandlerThreads
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext

__all__ = ["Ended", "SyncLane"]

K = TypeVar("K")

Ended = tuple[K, Outcome, float]
"""A run that ended (as the caller named it), how, and the backoff its registration asks
for before a retry."""


class _Attempt(Generic[K]):
    __slots__ = (
        "backoff",
        "context",
        "handler",
        "over",
        "run",
        "started",
        "started_at",
        "taken",
        "timeout",
        "timer",
    )

    def __init__(
        self, run: K, registered: RegisteredHandler, context: JobCompleteContext, taken: float
    ) -> None:
        self.run = run
        self.handler = registered.handler
        self.backoff = registered.policy.backoff
        self.timeout = registered.policy.timeout
        self.context = context
        self.taken = taken
        self.over = False
        self.started = 0.0
        self.started_at = 0.0
        self.timer: asyncio.TimerHandle | None = None


class SyncLane(Generic[K]):
    """Runs synchronous handlers on threads; calls ``ended`` on the loop with batches of
    runs that ended (see the module). Event-loop only."""

    def __init__(
        self,
        slots: ThreadSlots,
        threads: HandlerThreads,
        ended: Callable[[list[Ended[K]]], None],
        lapsed: Callable[[K], None] | None = None,
        held_since: Callable[[float], bool] | None = None,
    ) -> None:
        self._slots = slots
        self._threads = threads
        self._ended = ended
        self._lapsed = lapsed
        self._held_since = held_since
        self._batch: list[Ended[K]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._waiting: set[_Attempt[K]] = set()
        self._closed = False

    @property
    def busy(self) -> int:
        """Runs waiting for a slot or running."""
        return self._busy

    def start(
        self,
        run: K,
        registered: RegisteredHandler,
        context: JobCompleteContext,
        taken: float = 0.0,
    ) -> None:
        """Run ``registered`` on ``context`` once a slot is free; ``run`` names it in the
        batch it ends in. If its worker no longer holds what it took at ``taken`` by the
        time a slot frees up (``held_since``), it is handed to ``lapsed``, not started."""
        if self._closed:
            raise RuntimeError("the lane is closed: the worker stopped")
        self._loop = asyncio.get_running_loop()
        attempt = _Attempt(run, registered, context, taken)
        self._busy += 1
        self._idle.clear()
        if self._slots.take(partial(self._granted, attempt)):
            self._launch(attempt)
        else:
            self._waiting.add(attempt)

    def close(self) -> list[K]:
        """Start nothing more: returns the runs still waiting for a slot (they will not
        run here); those running go on to their end."""
        self._closed = True
        unstarted = [attempt.run for attempt in self._waiting]
        self._waiting.clear()
        self._busy -= len(unstarted)
        if not self._busy:
            self._idle.set()
        return unstarted

    async def idle(self) -> None:
        """Return once no run is waiting or running."""
        await self._idle.wait()

    def _granted(self, attempt: _Attempt[K]) -> bool:
        # A slot for a run that waited: only such a run can have been lost meanwhile.
        if self._closed:
            return False  # given back by close(): the slot goes on
        self._waiting.discard(attempt)
        held = self._held_since
        if self._lapsed is not None and held is not None and not held(attempt.taken):
            self._busy -= 1
            if not self._busy:
                self._idle.set()
            self._lapsed(attempt.run)
            return False
        self._launch(attempt)
        return True

    def _launch(self, attempt: _Attempt[K]) -> None:
        attempt.started, attempt.started_at = time.perf_counter(), time.time()
        attempt.timer = self._loop.call_later(attempt.timeout, self._expire, attempt)
        try:
            self._threads.start(
                partial(attempt.handler.run_handler, attempt.context),
                partial(self._end, attempt),
                self._loop,
            )
        except Exception as exc:  # no thread could be started: a process or thread limit
            self._over(attempt)
            error = f"jobhooks could not run the handler: {exc!r}"
            self._add(attempt, failed(exc, attempt.started, attempt.started_at, error))

    def _end(self, attempt: _Attempt[K], result: Any, error: BaseException | None) -> None:
        if attempt.over:
            return  # timed out earlier: already reported
        if error is None and result is not True and awaitable(result):
            # A synchronous run_handler that returned an awaitable: awaited on the loop,
            # within what is left of its timeout, still holding its slot.
            self._over(attempt, give=False)
            task = asyncio.ensure_future(
                settle(result, attempt.timeout, attempt.started, attempt.started_at)
            )
            task.add_done_callback(partial(self._awaited, attempt))
            return
        self._over(attempt)
        if error is not None:
            self._add(attempt, failed(error, attempt.started, attempt.started_at))
        else:
            self._add(attempt, returned(result, attempt.started, attempt.started_at))

    def _awaited(self, attempt: _Attempt[K], task: asyncio.Future[Outcome]) -> None:
        self._slots.give()
        try:
            outcome = task.result()
        except BaseException as exc:  # cancelled as the loop shut down
            outcome = failed(exc, attempt.started, attempt.started_at)
        self._add(attempt, outcome)

    def _expire(self, attempt: _Attempt[K]) -> None:
        if not attempt.over:
            self._over(attempt)
            self._add(attempt, timed_out(attempt.timeout, attempt.started, attempt.started_at))

    def _over(self, attempt: _Attempt[K], give: bool = True) -> None:
        attempt.over = True
        if attempt.timer is not None:
            attempt.timer.cancel()
        if give:
            self._slots.give()

    def _add(self, attempt: _Attempt[K], outcome: Outcome) -> None:
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append((attempt.run, outcome, attempt.backoff))

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._busy -= len(batch)
        if not self._busy:
            self._idle.set()
        self._ended(batch)
