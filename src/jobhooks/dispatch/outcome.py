"""What one attempt of a handler came to: success, or the error text that explains the
failure (its end by a return value, an exception or its timeout)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jobhooks.sdk.failure import PermanentFailure

__all__ = [
    "CANCEL_GRACE",
    "Outcome",
    "awaitable",
    "describe",
    "failed",
    "ordinary_error",
    "returned",
    "settle",
    "shown",
    "timed_out",
    "within",
]

_MAX_ERROR = 8_000
_MAX_SUMMARY = 1_000
_MAX_RESULT = 200
"""Characters of a return value other than True that its attempt's error shows."""
_NOT_RETRIED = " (a permanent failure: not retried)"
CANCEL_GRACE = 1.0
"""Seconds a timed-out async handler gets to end after its cancellation before it is
abandoned."""

_CANCELLED_BY_HANDLER = "CancelledError: raised by the handler (its attempt was not cancelled)"

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
    final: bool = False
    """The handler raised :class:`PermanentFailure`: the run is not retried."""


def describe(exc: BaseException) -> str:
    """``Type: message``, even when the exception's ``__str__`` raises (a handler's own
    exception class may be broken: its attempt must still end, saying what it can)."""
    try:
        message = str(exc)
    except BaseException as error:  # the handler's code: whatever it raises
        message = f"(its message could not be read: {type(error).__name__} in __str__)"
    name = type(exc).__name__
    return f"{name}: {message}".strip() if message else name


def ordinary_error(exc: BaseException) -> Exception:
    """``exc`` as an ``Exception``: SystemExit and the like end a handler's attempt, never
    the event loop."""
    return exc if isinstance(exc, Exception) else RuntimeError(describe(exc))


def shown(value: object) -> str:
    """``repr(value)``, or what can be said of it when its ``__repr__`` raises."""
    try:
        return repr(value)
    except BaseException as error:  # the handler's code: whatever it raises
        return f"a {type(value).__name__} (its repr() raised {type(error).__name__})"


def _storable(text: str) -> str:
    """``text`` as every database stores it: a NUL (PostgreSQL refuses one in text) and a
    lone surrogate (not UTF-8, refused by SQLite and PostgreSQL alike) written as
    Python escapes (``\\x00``, ``\\ud800``). A handler's exception or result may hold
    either: its attempt's error must still be stored, or the run stays "running"."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def failed(
    exc: BaseException, started: float, started_at: float, summary: str | None = None
) -> Outcome:
    """The outcome of an attempt that raised ``exc`` (its traceback kept, bounded);
    ``summary`` says what happened when ``exc`` alone would not. A
    :class:`PermanentFailure` (or a group of them) is final, and its error line says it
    is not retried."""
    text = _storable(_formatted(exc))
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR] + "\n... (truncated)"
    summary = _storable(summary or describe(exc))[: _MAX_SUMMARY - len(_NOT_RETRIED)]
    final = _permanent(exc)
    if final:
        summary += _NOT_RETRIED
    return Outcome(False, time.perf_counter() - started, summary, text, started_at, final)


def _permanent(exc: BaseException) -> bool:
    """A :class:`PermanentFailure`, or a group of nothing else (``asyncio.TaskGroup`` raises
    one in an ``ExceptionGroup``)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_permanent(inner) for inner in exc.exceptions)
    return isinstance(exc, PermanentFailure)


def _formatted(exc: BaseException) -> str:
    """``exc``'s traceback, or what can be said of it when formatting it raises (the
    handler's exception may be broken: a ``__notes__`` property that raises)."""
    try:
        return "".join(traceback.format_exception(exc)).strip()
    except BaseException as error:  # the handler's code: whatever it raises
        return (
            f"{describe(exc)}\n(its traceback could not be formatted: "
            f"{type(error).__name__} while formatting it)"
        )


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
    value = _storable(shown(result))
    if len(value) > _MAX_RESULT:
        value = value[:_MAX_RESULT] + f"... ({len(value):,} characters)"
    error = f"run_handler returned {value}, not True"
    return Outcome(False, duration, error, started_at=started_at)


def awaitable(result: Any) -> bool:
    """``inspect.isawaitable(result)``, False when even that raises (a handler's object
    whose ``__class__`` raises: its attempt must still end, judged by its value)."""
    try:
        return inspect.isawaitable(result)
    except BaseException:  # the handler's code: whatever it raises
        return False


async def settle(result: Any, timeout: float, started: float, started_at: float) -> Outcome:
    """:func:`returned`, but an awaitable is awaited within what is left of the timeout."""
    if awaitable(result):
        return await within(result, timeout, started, started_at)
    return returned(result, started, started_at)


async def within(
    call: Awaitable[Any], timeout: float, started: float, started_at: float
) -> Outcome:
    """Await ``call`` until ``timeout`` seconds after ``started``; anything but True is a
    failure.

    A handler that ignores its cancellation is left behind after a short grace,
    so an attempt always ends (and is reported) soon after its timeout. (One that
    blocks the event loop, ``time.sleep`` in ``async def``, cannot be timed out while
    it holds it; its end is judged by what it returns, as the attempts it held up are:
    failing those for the time another took would run them twice.) A
    ``CancelledError`` the handler raised itself (not a cancellation of this attempt:
    that would reach the caller's ``await``) is a failure like any other.
    """
    _guard_tasks(asyncio.get_running_loop())
    task = asyncio.ensure_future(_ordinary(call))
    left = max(0.0, timeout - (time.perf_counter() - started))
    done, _pending = await asyncio.wait({task}, timeout=left)
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
    except asyncio.CancelledError as exc:
        return failed(exc, started, started_at, _CANCELLED_BY_HANDLER)
    except Exception as exc:
        return failed(exc, started, started_at)
    return await settle(result, timeout, started, started_at)


async def _ordinary(call: Awaitable[Any]) -> Any:
    # A task whose coroutine raises SystemExit or KeyboardInterrupt re-raises it out of the
    # event loop: a handler's awaitable (even one a sync run_handler returned) must not
    # end the worker, nor must the tasks it starts (see _guard_tasks).
    _HANDLER_CODE.set(True)  # in this task's own context, and the tasks it starts
    try:
        return await call
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise ordinary_error(exc) from exc


_HANDLER_CODE: ContextVar[bool] = ContextVar("jobhooks_handler_code", default=False)
"""True in a handler's task and in the tasks it starts."""


class _Guarded(Coroutine[Any, Any, Any]):
    """A handler's coroutine, run by a task as it is, but for SystemExit and the like,
    which end it in an ordinary error. (Not a wrapping coroutine: a task cancelled before
    it starts would leave the handler's coroutine never awaited.)"""

    def __init__(self, inner: Coroutine[Any, Any, Any]) -> None:
        self._inner = inner

    def send(self, value: Any) -> Any:
        return self._guard(self._inner.send, value)

    def throw(self, *args: Any) -> Any:
        return self._guard(self._inner.throw, *args)

    def close(self) -> None:
        self._inner.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return (yield from self._inner.__await__())

    def __getattr__(self, name: str) -> Any:
        # The rest of a coroutine's face (cr_running, cr_frame, __qualname__...), which
        # inspect.getcoroutinestate reads: anyio delivers a cancellation only to a task
        # whose coroutine's state it can read.
        return getattr(self._inner, name)

    @staticmethod
    def _guard(step: Callable[..., Any], *args: Any) -> Any:
        try:
            return step(*args)
        except (Exception, asyncio.CancelledError):  # StopIteration: its return
            raise
        except BaseException as exc:
            raise ordinary_error(exc) from exc


def _guard_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Make the tasks a handler starts on ``loop`` (``asyncio.gather``, ``create_task``, a
    ``TaskGroup``) end in an ordinary error where they would raise SystemExit (a click
    command's ``main()``, say) or KeyboardInterrupt: asyncio re-raises those out of the
    event loop, and the worker ended (with exit code 0 for ``sys.exit(0)``). Installed
    once per loop, in front of any task factory it had; jobhooks' own tasks are left as
    they are."""
    previous = loop.get_task_factory()
    if getattr(previous, "jobhooks_guard", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Future[Any]:
        # ``options``: what this Python's create_task passes (context; name and
        # eager_start on newer ones, as uvloop on Python 3.13 does), passed on as given.
        if _HANDLER_CODE.get() and asyncio.iscoroutine(coro):
            coro = _Guarded(coro)
        if previous is None:
            return asyncio.Task(coro, loop=loop, **options)
        return previous(loop, coro, **options)

    factory.jobhooks_guard = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Mark the abandoned task's exception as seen (it was reported as a timeout).
    if not task.cancelled():
        task.exception()
