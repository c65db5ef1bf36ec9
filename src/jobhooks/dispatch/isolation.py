"""Run one attempt in a child process that can be killed (``isolation = "process"``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import time
import traceback
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from jobhooks.dispatch.execute import run_attempt, run_in_thread
from jobhooks.dispatch.outcome import Outcome
from jobhooks.dispatch.slots import ThreadSlots
from jobhooks.logs import LogSetup, configure_logging, current_setup
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext
from jobhooks.sdk.handler import JobCompleteHandler

__all__ = ["START_LIMIT", "run_as_registered", "run_in_process"]

_spawn = multiprocessing.get_context("spawn")

START_LIMIT = 60.0
"""Seconds a child process may take to start (a fresh interpreter importing the handler's
module) before the attempt fails; the handler's timeout counts from when it has."""
_STARTED = "started"


def _child(
    pipe: Connection, handler: JobCompleteHandler, context: JobCompleteContext, logs: LogSetup
) -> None:
    configure_logging(*logs)  # a spawned interpreter logs like its worker
    try:
        pipe.send(_STARTED)
        result: Any = handler.run_handler(context)
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
        if result is True:
            pipe.send((True, None, None))
        else:
            pipe.send((False, f"run_handler returned {result!r}, not True", None))
    except BaseException as exc:
        pipe.send((False, f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))))
    finally:
        pipe.close()


def _run_blocking(
    handler: JobCompleteHandler, context: JobCompleteContext, timeout: float
) -> Outcome:
    receiver, sender = _spawn.Pipe(duplex=False)
    process = _spawn.Process(
        target=_child, args=(sender, handler, context, current_setup()), daemon=True
    )
    began = time.perf_counter()
    process.start()
    sender.close()
    try:
        if not receiver.poll(START_LIMIT):
            return Outcome(
                False,
                time.perf_counter() - began,
                f"the handler's process did not start within {START_LIMIT:g} s (killed)",
            )
        try:
            receiver.recv()  # the child is about to call the handler: its time starts
        except EOFError:
            process.join(5)
            return Outcome(
                False,
                time.perf_counter() - began,
                f"the handler's process exited with code {process.exitcode} before starting",
            )
        started = time.perf_counter()
        started_at = time.time()
        if not receiver.poll(timeout):
            return Outcome(
                False,
                time.perf_counter() - started,
                f"timed out after {timeout:g} s (killed)",
                started_at=started_at,
            )
        try:
            ok, error, trace = receiver.recv()
        except EOFError:
            process.join(5)
            return Outcome(
                False,
                time.perf_counter() - started,
                f"the handler's process exited with code {process.exitcode} before reporting",
                started_at=started_at,
            )
        process.join(5)
        return Outcome(ok, time.perf_counter() - started, error, trace, started_at)
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
            process.join(5)


async def run_in_process(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: ThreadSlots | None = None,
) -> Outcome:
    """Run ``registered`` once in a fresh child process; kill it at the timeout.

    At most as many children run at once as ``slots`` allows (the worker's
    ``threads``); the timeout starts when the child is about to call the
    handler, so neither waiting for a slot nor starting the interpreter counts.
    The child gets the handler (properties included) and the context's data;
    ``context.client`` there is not configured.
    """
    async with slots if slots is not None else contextlib.nullcontext():
        # Not the loop's default pool: check-ins and operator reads need its threads.
        return await run_in_thread(
            partial(_run_blocking, registered.handler, context, registered.policy.timeout)
        )


async def run_as_registered(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: ThreadSlots | None = None,
) -> Outcome:
    """Run one attempt the way its registration says: in a child process with
    ``isolation = "process"``, here otherwise (see :func:`run_attempt`)."""
    if registered.policy.isolation == "process":
        return await run_in_process(registered, context, slots)
    return await run_attempt(registered, context, slots)
