"""Children of isolated attempts never outlive their attempt: not when their worker is
killed, not when it is stopped (SIGSTOP) past their timeout, not after a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.misbehaving import process_ended
from support.registrations import build_registry

from jobhooks.dispatch.isolation import run_in_process
from jobhooks.testing import sample_context

_TESTS = Path(__file__).parents[1]

_WORKER = """
import asyncio, sys
from pathlib import Path
from support.registrations import build_registry
from jobhooks.dispatch.isolation import run_in_process
from jobhooks.testing import sample_context

folder = Path(sys.argv[1])
registry = build_registry(
    folder,
    {
        "name": "hangs",
        "type": "support.misbehaving:HangsWithPid",
        "isolation": "process",
        "timeout": float(sys.argv[2]),
        "properties": {"path": str(folder / "child.pid")},
    },
)
asyncio.run(run_in_process(registry.get("hangs"), sample_context()))
"""


def wait_for(condition: object, seconds: float, what: str) -> float:
    """Wait (bounded) until ``condition()``; returns how long it took."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, f"{what} after {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


@contextmanager
def isolated_attempt(folder: Path, timeout: float) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A worker process running one isolated attempt of a handler that hangs: (the worker,
    the pid of the attempt's child once the handler runs). Both are killed on the way out."""
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_TESTS), *sys.path])}
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(folder), str(timeout)], env=env)
    pid_file = folder / "child.pid"
    child = 0
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the handler never ran")
        child = int(pid_file.read_text())
        yield worker, child
    finally:
        worker.kill()
        worker.wait(10)
        if child and not process_ended(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_an_isolated_child_dies_with_its_killed_worker(tmp_path: Path) -> None:
    with isolated_attempt(tmp_path / "w", timeout=60) as (worker, child):
        worker.kill()
        worker.wait(10)
        wait_for(lambda: process_ended(child), 5, "the child outlived its killed worker")


def test_an_isolated_child_ends_itself_past_its_timeout_when_its_worker_cannot(
    tmp_path: Path,
) -> None:
    with isolated_attempt(tmp_path / "w", timeout=1) as (worker, child):
        worker.send_signal(signal.SIGSTOP)  # alive, but it cannot kill the child at 1 s
        took = wait_for(
            lambda: process_ended(child), 10, "the child outlived its attempt's timeout"
        )
        assert not process_ended(worker.pid), "its worker is still there, stopped"
    assert took < 5


def test_what_an_isolated_handler_started_is_killed_with_it_at_the_timeout(
    tmp_path: Path,
) -> None:
    """A handler that shells out and hangs: the command it started is killed with its
    attempt, not left running beside the retry."""
    registry = build_registry(
        tmp_path,
        {
            "name": "shells-out",
            "type": "support.misbehaving:HangsWithAChild",
            "isolation": "process",
            "timeout": 1.0,
            "properties": {"path": str(tmp_path / "started.pid")},
        },
    )
    registered = registry.get("shells-out")
    assert registered is not None

    outcome = asyncio.run(run_in_process(registered, sample_context()))

    assert outcome.error == "timed out after 1 s (killed)"
    started = int((tmp_path / "started.pid").read_text())
    try:
        wait_for(lambda: process_ended(started), 5, "what the handler started still runs")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(started, signal.SIGKILL)
