"""Run one attempt of a handler on a context and report what happened."""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext

__all__ = ["Outcome", "run_attempt"]

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


async def run_attempt(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    executor: Executor | None = None,
) -> Outcome:
    """Run ``registered`` once on ``context`` within its timeout.

    Async handlers run on the event loop; sync handlers run in ``executor``
    (the loop's default pool when None). Anything but a return of ``True``
    is a failure with an error text.
    """
    handler = registered.handler
    timeout = registered.policy.timeout
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(handler.run_handler):
            result = await asyncio.wait_for(handler.run_handler(context), timeout)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(executor, partial(handler.run_handler, context))
            result = await asyncio.wait_for(call, timeout)
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
