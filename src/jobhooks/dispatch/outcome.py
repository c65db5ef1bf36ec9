"""What one attempt of a handler came to: success, or the error text that explains the
failure (its end by a return value, an exception or its timeout)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CANCEL_GRACE", "Outcome", "failed", "returned", "settle", "timed_out", "within"]

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


def failed(exc: BaseException, started: float, started_at: float) -> Outcome:
    """The outcome of an attempt that raised ``exc`` (its traceback kept, bounded)."""
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR] + "\n... (truncated)"
    summary = f"{type(exc).__name__}: {exc}".strip()
    return Outcome(False, time.perf_counter() - started, summary[:1000], text, started_at)


def timed_out(timeout: float, started: float, started_at: float) -> Outcome:
    """The outcome of an attempt that outlived its ``timeout``."""
    return Outcome(
        False, time.perf_counter() - started, f"timed out after {timeout:g} s", None, started_at
    )


def returned(result: Any, started: float, started_at: float) -> Outcome:
    """What a handler's return value (not an awaitable) means: True succeeds, anything
    else fails."""
    duration = time.perf_counter() - started
    if result is True:
        return Outcome(True, duration, started_at=started_at)
    return Outcome(
        False, duration, f"run_handler returned {result!r}, not True", started_at=started_at
    )


async def settle(result: Any, timeout: float, started: float, started_at: float) -> Outcome:
    """:func:`returned`, but an awaitable is awaited within what is left of the timeout."""
    if inspect.isawaitable(result):
        left = max(0.0, timeout - (time.perf_counter() - started))
        return await within(result, left, started, started_at)
    return returned(result, started, started_at)


async def within(
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
        return timed_out(timeout, started, started_at)
    try:
        result = task.result()
    except Exception as exc:
        return failed(exc, started, started_at)
    return await settle(result, timeout, started, started_at)


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Mark the abandoned task's exception as seen (it was reported as a timeout).
    if not task.cancelled():
        task.exception()
