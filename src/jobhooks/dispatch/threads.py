"""The threads synchronous handlers run on: kept between runs, never waited for.

Starting a thread per run costs more than a no-op handler itself, so finished
threads wait for the next call. A pool with a fixed size would lose a thread
to every handler stuck on a dead socket; here a call that finds no idle thread
starts one, so a stuck thread holds up nothing (how many run at once is the
worker's ``threads`` limit, not this). Threads idle for :data:`IDLE_EXIT`
seconds end. Results reach the event loop in batches: one wake-up of the loop
for however many calls ended meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from jobhooks.dispatch.outcome import ordinary_error

__all__ = ["IDLE_EXIT", "HandlerThreads", "Then", "handler_threads"]

T = TypeVar("T")

logger = logging.getLogger("jobhooks.worker")

IDLE_EXIT = 30.0
"""Seconds a thread waits for a call before it ends."""

Then = Callable[[Any, "BaseException | None"], None]
"""What is called on the event loop with a call's result, or the exception it raised."""
_Job = tuple[asyncio.AbstractEventLoop, Then, Callable[[], Any]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class _Results:
    """Calls that ended, waiting to be handed to one event loop in a batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ended: list[tuple[Then, Any, BaseException | None]] = []

    def add(self, then: Then, result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._ended.append((then, result, error))
            first = len(self._ended) == 1
        if first:
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ended, self._ended = self._ended, []
        for then, result, error in ended:
            try:
                then(result, error)
            except Exception:  # one broken callback must not strand the others' results
                logger.exception("handing over a handler thread's result failed")


class HandlerThreads:
    """Runs blocking calls on daemon threads kept between calls (see the module)."""

    def __init__(self, idle_exit: float = IDLE_EXIT) -> None:
        self._idle_exit = idle_exit
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        """Threads waiting for a call that no call has claimed yet."""
        self._results: dict[asyncio.AbstractEventLoop, _Results] = {}

    @property
    def idle(self) -> int:
        """Threads waiting for a call."""
        return self._idle

    def call(self, function: Callable[[], T]) -> asyncio.Future[T]:
        """Start ``function`` on a thread now; its result or exception arrives in the
        returned future (on the running loop). Nothing waits for the thread when the
        caller stops waiting for the future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.start(function, partial(_settle, future))
        return future

    def start(
        self,
        function: Callable[[], Any],
        then: Then,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Start ``function`` on a thread now; ``then(result, error)`` is called on
        ``loop`` (the running one by default) when it ends, with the other calls that
        ended meanwhile. Raises ``RuntimeError`` when no thread can be started (the call
        is then not made)."""
        loop = loop or asyncio.get_running_loop()
        with self._lock:
            if loop not in self._results:
                self._results = {
                    **{k: v for k, v in self._results.items() if not k.is_closed()},
                    loop: _Results(loop),
                }
            claimed = self._idle > 0
            if claimed:
                self._idle -= 1
        if not claimed:
            # Started before the call is queued: when no thread can be started (a process
            # or thread limit) this raises, and the call is not left queued to run later.
            threading.Thread(target=self._serve, name="jobhooks-handler", daemon=True).start()
        self._jobs.put((loop, then, function))

    def _serve(self) -> None:
        while True:
            try:
                loop, then, function = self._jobs.get(timeout=self._idle_exit)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        return
                continue  # a call claimed this thread as it timed out: its job is coming
            result: Any = None
            error: BaseException | None = None
            try:
                result = function()
            except BaseException as exc:
                error = ordinary_error(exc)
            # Idle before the result is out, so the call it lets run next reuses this thread.
            with self._lock:
                self._idle += 1
            self._results[loop].add(then, result, error)
            del loop, then, function, result, error


_SHARED = HandlerThreads()


def handler_threads() -> HandlerThreads:
    """The process's threads for synchronous handlers."""
    return _SHARED
