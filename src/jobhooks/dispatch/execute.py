"""Run one attempt of a handler on a context and report what happened."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext

__all__ = ["Outcome", "run_attempt", "run_in_thread"]

T = TypeVar("T")

_MAX_ERROR = 8_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt: success, or the error text that explains the failure."""

    succeeded: bool
    duration: float
    error: str | None = None
    """One line: what went wrong."""
    traceback: str | None = None
    """The Python traceback, when the handler raised."""


def _failure(exc: BaseException, started: float) -> Outcome:
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR] + "\n... (truncated)"
    summary = f"{type(exc).__name__}: {exc}".strip()
    return Outcome(False, time.perf_counter() - started, summary[:1000], text)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _ordinary(exc: BaseException) -> Exception:
    # SystemExit and the like end a handler's attempt, never the event loop.
    return exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")


async def run_in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call on a daemon thread of its own and await its result.

    A pool's thread that never returns (a handler stuck on a dead socket) is
    lost to every later run, and joined at exit. This thread is abandoned
    when its caller stops waiting: it holds up nothing, not even the exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:
            error = _ordinary(exc)
        with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
            loop.call_soon_threadsafe(_settle, future, result, error)

    threading.Thread(target=target, name="jobhooks-handler", daemon=True).start()
    return await future


async def _call_async(registered: RegisteredHandler, context: JobCompleteContext) -> Any:
    try:
        return await registered.handler.run_handler(context)  # type: ignore[misc]
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise _ordinary(exc) from exc


async def _call_sync(
    registered: RegisteredHandler, context: JobCompleteContext, slots: asyncio.Semaphore | None
) -> Any:
    # A timeout cancels this coroutine, which gives the slot back even if the
    # handler's thread never returns.
    async with slots if slots is not None else contextlib.nullcontext():
        return await run_in_thread(partial(registered.handler.run_handler, context))


async def run_attempt(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: asyncio.Semaphore | None = None,
) -> Outcome:
    """Run ``registered`` once on ``context`` within its timeout.

    Async handlers run on the event loop; sync handlers run on a thread of
    their own, at most as many at once as ``slots`` allows (a handler that
    timed out no longer counts). Anything but a return of ``True`` is a
    failure with an error text.
    """
    handler = registered.handler
    timeout = registered.policy.timeout
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(handler.run_handler):
            result = await asyncio.wait_for(_call_async(registered, context), timeout)
        else:
            result = await asyncio.wait_for(_call_sync(registered, context, slots), timeout)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
    except TimeoutError:
        return Outcome(False, time.perf_counter() - started, f"timed out after {timeout:g} s")
    except Exception as exc:
        return _failure(exc, started)
    duration = time.perf_counter() - started
    if result is True:
        return Outcome(True, duration)
    return Outcome(False, duration, f"run_handler returned {result!r}, not True")
