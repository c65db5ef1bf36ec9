"""Run one attempt of a handler in this process and report what happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from jobhooks.dispatch.lane import Ended, SyncLane
from jobhooks.dispatch.outcome import Outcome, within
from jobhooks.dispatch.slots import ThreadSlots
from jobhooks.dispatch.threads import handler_threads
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext

__all__ = ["is_async", "run_attempt", "run_in_thread"]

T = TypeVar("T")


def is_async(registered: RegisteredHandler) -> bool:
    """True when the handler's ``run_handler`` is a coroutine function (runs on the loop)."""
    return inspect.iscoroutinefunction(registered.handler.run_handler)


async def run_in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call on a handler thread and await its result (see
    :mod:`jobhooks.dispatch.threads`: a call that never returns holds up nothing)."""
    return await handler_threads().call(call)


async def _call_async(registered: RegisteredHandler, context: JobCompleteContext) -> Any:
    return await registered.handler.run_handler(context)  # type: ignore[misc]


async def run_attempt(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: ThreadSlots | None = None,
) -> Outcome:
    """Run ``registered`` once on ``context`` within its timeout.

    Async handlers run on the event loop; sync handlers run on a handler thread
    through a :class:`~jobhooks.dispatch.lane.SyncLane`, at most as many at once
    as ``slots`` allows. The timeout starts when the handler starts: waiting for
    a free thread is not part of the attempt (a handler that timed out no longer
    holds its slot). Anything but a return of ``True`` is a failure with an
    error text.
    """
    if is_async(registered):
        return await within(
            _call_async(registered, context),
            registered.policy.timeout,
            time.perf_counter(),
            time.time(),
        )
    ended: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def report(batch: list[Ended[None]]) -> None:
        if not ended.done():
            ended.set_result(batch[0][1])

    SyncLane(slots or ThreadSlots(1), handler_threads(), report).start(None, registered, context)
    return await ended
