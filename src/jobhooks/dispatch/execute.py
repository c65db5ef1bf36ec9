"""Run one attempt of a handler on a context and report what happened."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from jobhooks.dispatch.threads import handler_threads, ordinary_error
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext

__all__ = ["Outcome", "run_attempt", "run_in_thread"]

T = TypeVar("T")

_MAX_ERROR = 8_000
CANCEL_GRACE = 1.0
"""Seconds a timed-out async handler gets to end after its cancellation before it is
abandoned."""

logger = logging.getLogger("jobhooks.worker")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt: success, or the error text that explains the failure."""

    succeeded: bool
    duration: float
    error: str | None = None
    """One line: what went wrong."""
    traceback: str | None = None
    """The Python traceback, when the handler raised."""
    started_at: float = field(default_factory=time.time)
    """When the handler started (after any wait for a free thread), seconds since the epoch."""


def _failure(exc: BaseException, started: float, started_at: float) -> Outcome:
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR] + "\n... (truncated)"
    summary = f"{type(exc).__name__}: {exc}".strip()
    return Outcome(False, time.perf_counter() - started, summary[:1000], text, started_at)


async def run_in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call on a handler thread and await its result (see
    :mod:`jobhooks.dispatch.threads`: a call that never returns holds up nothing)."""
    return await handler_threads().call(call)


async def _call_async(registered: RegisteredHandler, context: JobCompleteContext) -> Any:
    try:
        return await registered.handler.run_handler(context)  # type: ignore[misc]
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise ordinary_error(exc) from exc


def _timed_out(timeout: float, started: float, started_at: float) -> Outcome:
    return Outcome(
        False, time.perf_counter() - started, f"timed out after {timeout:g} s", None, started_at
    )


async def _verdict(result: Any, timeout: float, started: float, started_at: float) -> Outcome:
    """What a handler's return value means: True succeeds, an awaitable is awaited within
    what is left of the timeout, anything else fails."""
    if inspect.isawaitable(result):
        left = max(0.0, timeout - (time.perf_counter() - started))
        return await _within(result, left, started, started_at)
    duration = time.perf_counter() - started
    if result is True:
        return Outcome(True, duration, started_at=started_at)
    return Outcome(
        False, duration, f"run_handler returned {result!r}, not True", started_at=started_at
    )


async def _within(
    call: Awaitable[Any], timeout: float, started: float, started_at: float
) -> Outcome:
    """Await ``call`` for at most ``timeout`` seconds; anything but True is a failure.

    A handler that ignores its cancellation is left behind after a short grace,
    so an attempt always ends (and is reported) soon after its timeout.
    """
    task = asyncio.ensure_future(call)
    done, _pending = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        finished, _pending = await asyncio.wait({task}, timeout=CANCEL_GRACE)
        if not finished:
            logger.warning("a handler ignored its cancellation after %g s; abandoned", timeout)
            task.add_done_callback(_retrieve)
        else:
            _retrieve(task)
        return _timed_out(timeout, started, started_at)
    try:
        result = task.result()
    except Exception as exc:
        return _failure(exc, started, started_at)
    return await _verdict(result, timeout, started, started_at)


class _Expired(Exception):
    """A thread's call outlived its timeout; its result, when it comes, is dropped."""


def _expire(ended: asyncio.Future[Any]) -> None:
    if not ended.done():
        ended.set_exception(_Expired())


async def _thread_within(
    ended: asyncio.Future[Any], timeout: float, started: float, started_at: float
) -> Outcome:
    """:func:`_within` for a call on a handler thread: the thread's future is awaited
    under a timer (no task around it; nothing waits for the thread once it expires)."""
    timer = asyncio.get_running_loop().call_later(timeout, _expire, ended)
    try:
        result = await ended
    except _Expired:
        return _timed_out(timeout, started, started_at)
    except Exception as exc:
        return _failure(exc, started, started_at)
    finally:
        timer.cancel()
    return await _verdict(result, timeout, started, started_at)


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Mark the abandoned task's exception as seen (it was reported as a timeout).
    if not task.cancelled():
        task.exception()


async def run_attempt(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: asyncio.Semaphore | None = None,
) -> Outcome:
    """Run ``registered`` once on ``context`` within its timeout.

    Async handlers run on the event loop; sync handlers run on a thread of
    their own, at most as many at once as ``slots`` allows. The timeout starts
    when the handler starts: waiting for a free thread is not part of the
    attempt (a handler that timed out no longer holds its slot). Anything but
    a return of ``True`` is a failure with an error text.
    """
    handler = registered.handler
    timeout = registered.policy.timeout
    if inspect.iscoroutinefunction(handler.run_handler):
        return await _within(
            _call_async(registered, context), timeout, time.perf_counter(), time.time()
        )
    async with slots if slots is not None else contextlib.nullcontext():
        started, started_at = time.perf_counter(), time.time()
        ended = handler_threads().call(partial(handler.run_handler, context))
        return await _thread_within(ended, timeout, started, started_at)
