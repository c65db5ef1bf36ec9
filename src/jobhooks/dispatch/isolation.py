"""Run one attempt in a child process that can be killed (``isolation = "process"``)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from jobhooks.dispatch.execute import run_attempt, run_in_thread
from jobhooks.dispatch.outcome import CANCEL_GRACE, Outcome, awaitable, failed, returned
from jobhooks.dispatch.slots import Lapsed, ThreadSlots
from jobhooks.logs import LogSetup, configure_logging, current_setup
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.sdk.context import JobCompleteContext
from jobhooks.sdk.handler import JobCompleteHandler

__all__ = ["START_LIMIT", "kill_children", "run_as_registered", "run_in_process"]

_spawn = multiprocessing.get_context("spawn")

START_LIMIT = 60.0
"""Seconds a child process may take to start (a fresh interpreter importing the handler's
module) before the attempt fails; the handler's timeout counts from when it has."""
_STARTED = "started"
_children: set[BaseProcess] = set()
"""The children of the attempts running in this process."""
_killed: set[BaseProcess] = set()
"""Those :func:`kill_children` killed: their attempts say so."""
_children_lock = threading.Lock()
_PR_SET_PDEATHSIG = 1
_ORPHANED = 70
"""The exit code of a child that ended itself: its worker was gone, or its attempt's
time (with a grace) was up."""


def _child(
    pipe: Connection,
    handler: JobCompleteHandler,
    context: JobCompleteContext,
    logs: LogSetup,
    parent: int,
    timeout: float,
) -> None:
    # A process group of its own: what the handler starts (a shell command, a CLI) is
    # killed with it at the timeout or a stop, not left running beside the retry.
    os.setpgid(0, 0)
    _die_with(parent)
    configure_logging(*logs)  # a spawned interpreter logs like its worker
    try:
        _end_within(timeout + CANCEL_GRACE)
        pipe.send(_STARTED)
        started, started_at = time.perf_counter(), time.time()
        try:
            result: Any = handler.run_handler(context)
            if awaitable(result):
                result = asyncio.run(result)
            outcome = returned(result, started, started_at)
        except BaseException as exc:
            outcome = failed(exc, started, started_at)
        pipe.send((outcome.succeeded, outcome.error, outcome.traceback, outcome.final))
    finally:
        pipe.close()


def _die_with(parent: int) -> None:
    """End this child when its worker (process ``parent``) ends: a worker killed
    mid-attempt can no longer kill it at its timeout, and an orphan must not run on
    beside the retry of its attempt."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the worker was gone before the line above took effect
        os._exit(_ORPHANED)


def _end_within(seconds: float) -> None:
    """End this child ``seconds`` from now at the latest, even if its worker cannot kill it
    (the worker is stopped, or a platform without a parent-death signal lost it)."""
    # The thread ends the whole group (what the handler started too); the kernel's timer,
    # a grace later, needs no thread and ends this process even while C code holds the
    # interpreter.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, seconds + CANCEL_GRACE)
    watchdog = threading.Timer(seconds, _end_group)
    watchdog.daemon = True
    watchdog.start()


def _end_group() -> None:
    """End this child and every process of its group (what its handler started)."""
    with contextlib.suppress(OSError):
        os.killpg(0, signal.SIGKILL)
    os._exit(_ORPHANED)


def _kill(process: BaseProcess) -> None:
    """Kill a child and what its handler started (its process group)."""
    if process.pid is not None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    process.kill()


def _run_blocking(
    handler: JobCompleteHandler, context: JobCompleteContext, timeout: float
) -> Outcome:
    receiver, sender = _spawn.Pipe(duplex=False)
    process = _spawn.Process(
        target=_child,
        args=(sender, handler, context, current_setup(), os.getpid(), timeout),
        daemon=True,
    )
    began = time.perf_counter()
    process.start()
    with _children_lock:
        _children.add(process)
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
            ok, error, trace, final = receiver.recv()
        except EOFError:
            process.join(5)
            if process in _killed:
                error = "killed as its worker stopped, before the handler ended"
            else:
                error = f"the handler's process exited with code {process.exitcode} "
                error += "before reporting"
            return Outcome(False, time.perf_counter() - started, error, started_at=started_at)
        process.join(5)
        return Outcome(ok, time.perf_counter() - started, error, trace, started_at, final)
    finally:
        receiver.close()
        if process.is_alive():
            _kill(process)
            process.join(5)
        with _children_lock:
            _children.discard(process)
            _killed.discard(process)


def kill_children() -> int:
    """Kill the child process of every isolated attempt still running here (the worker
    stops and waits for them no longer); returns how many. Each attempt ends failed,
    saying so, rather than leave its child running after the worker."""
    with _children_lock:
        running = list(_children)  # without is_alive(): its wait would race their thread's
        _killed.update(running)
    for process in running:
        _kill(process)
    return len(running)


async def run_in_process(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: ThreadSlots | None = None,
    lapsed: Callable[[], bool] | None = None,
) -> Outcome:
    """Run ``registered`` once in a fresh child process; kill it at the timeout.

    At most as many children run at once as ``slots`` allows (the worker's
    ``threads``); the timeout starts when the child is about to call the
    handler, so neither waiting for a slot nor starting the interpreter counts.
    The child gets the handler (properties included) and the context's data;
    ``context.client`` there is not configured. When ``lapsed()`` is true once
    a slot is free, the run is not started (:class:`Lapsed`). The child ends
    with its worker, and a grace after its timeout at the latest.
    """
    async with slots if slots is not None else contextlib.nullcontext():
        if lapsed is not None and lapsed():
            raise Lapsed("the run's lease ran out while it waited for a slot")
        # Not the loop's default pool: check-ins and operator reads need its threads.
        return await run_in_thread(
            partial(_run_blocking, registered.handler, context, registered.policy.timeout)
        )


async def run_as_registered(
    registered: RegisteredHandler,
    context: JobCompleteContext,
    slots: ThreadSlots | None = None,
    lapsed: Callable[[], bool] | None = None,
) -> Outcome:
    """Run one attempt the way its registration says: in a child process with
    ``isolation = "process"`` (see :func:`run_in_process`), here otherwise (see
    :func:`run_attempt`)."""
    if registered.policy.isolation == "process":
        return await run_in_process(registered, context, slots, lapsed)
    return await run_attempt(registered, context, slots)
