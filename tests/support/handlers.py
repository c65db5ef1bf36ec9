"""Handler types the pipeline tests register as ``support.handlers:Class``.

They leave traces in files named by their properties, so a test (in this
process or outside a server process) can count what ran.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler, PermanentFailure


def append_line(path: str, line: str) -> None:
    """Append one line in a single write, so concurrent runs never interleave."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def read_lines(path: str | Path) -> list[str]:
    """The complete lines of a trace file (none if it does not exist yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line]


class Appender(JobCompleteHandler):
    """Appends ``<completion_id> <attempt>`` to ``path``: one line per execution."""

    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        append_line(self.path, f"{context.completion_id} {context.attempt}")
        return True


class Flaky(JobCompleteHandler):
    """Fails the first ``failures`` executions for each completion, then succeeds.

    The executions so far are counted in ``state_dir/<completion_id>``.
    """

    state_dir: str
    failures: int = 2

    def run_handler(self, context: JobCompleteContext) -> bool:
        counter = Path(self.state_dir) / context.completion_id
        with counter.open("a", encoding="utf-8") as out:
            out.write("x")
        executions = counter.stat().st_size
        if executions <= self.failures:
            raise RuntimeError(f"flaky failure {executions} of {self.failures}")
        return True


class Gated(JobCompleteHandler):
    """Logs each execution to ``path`` and fails while the file ``gate`` does not exist."""

    gate: str
    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        append_line(self.path, f"{context.completion_id} {context.attempt}")
        if not Path(self.gate).exists():
            raise RuntimeError(f"gate {Path(self.gate).name} is closed")
        return True


class Raises(JobCompleteHandler):
    """Always raises."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise RuntimeError("handler exploded on purpose")


class GivesUp(JobCompleteHandler):
    """Raises ``PermanentFailure``: trying again cannot help."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise PermanentFailure("the receiver was removed (410 Gone)")


class AsyncGivesUp(JobCompleteHandler):
    """Raises ``PermanentFailure`` from ``async def``."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        raise PermanentFailure("the receiver was removed (410 Gone)")


class GivesUpInATaskGroup(JobCompleteHandler):
    """Sends to two receivers in an ``asyncio.TaskGroup``: the first raises
    ``PermanentFailure``, the second too or, with ``flaky``, a ``ConnectionError``."""

    flaky: bool = False

    async def run_handler(self, context: JobCompleteContext) -> bool:
        async def send(gone: bool) -> None:
            if gone:
                raise PermanentFailure("the receiver was removed (410 Gone)")
            raise ConnectionError("connection reset")

        async with asyncio.TaskGroup() as group:
            group.create_task(send(gone=True))
            group.create_task(send(gone=not self.flaky))
        return True


class ReturnsFalse(JobCompleteHandler):
    """Reports failure the seed's way: by returning False."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        return False


class CallsSysExit(JobCompleteHandler):
    """Calls ``sys.exit(2)``, as a script pasted into a handler might."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        sys.exit(2)


class AsyncSucceeds(JobCompleteHandler):
    """Succeeds at once, from ``async def``."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class AsyncCallsSysExit(JobCompleteHandler):
    """Calls ``sys.exit(2)`` on the event loop."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        sys.exit(2)


class Hangs(JobCompleteHandler):
    """Blocks its thread for an hour (a handler stuck on a dead socket)."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        time.sleep(3600)
        return True


class AsyncHangs(JobCompleteHandler):
    """Awaits for an hour on the event loop."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        await asyncio.sleep(3600)
        return True


class Exits(JobCompleteHandler):
    """Kills its process with exit code 3 (register it with ``isolation = "process"``)."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        os._exit(3)


class Spans(JobCompleteHandler):
    """Sleeps ``seconds``, then appends ``<start> <end>`` (``time.monotonic``, one clock for
    every process of the machine) to ``path``: how many ran at once can be read back."""

    path: str
    seconds: float = 0.3

    def run_handler(self, context: JobCompleteContext) -> bool:
        began = time.monotonic()
        time.sleep(self.seconds)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(f"{began} {time.monotonic()}\n")
        return True


class Sleeps(JobCompleteHandler):
    """Sleeps ``seconds`` on its thread, then appends ``<completion_id> <attempt>`` to
    ``path`` (a handler slower than the threads free for it)."""

    path: str
    seconds: float = 0.3

    def run_handler(self, context: JobCompleteContext) -> bool:
        time.sleep(self.seconds)
        append_line(self.path, f"{context.completion_id} {context.attempt}")
        return True


class IgnoresCancellation(JobCompleteHandler):
    """An async handler that swallows its cancellation and goes on for ``seconds``."""

    seconds: float = 30.0

    async def run_handler(self, context: JobCompleteContext) -> bool:
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue
        return True


class GroupAppender(JobCompleteHandler):
    """Appends ``<attempt> <completion_id,completion_id,...>``: one line per execution, with
    the completions of its group (a digest's, oldest first)."""

    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        members = ",".join(member.completion_id for member in context.group)
        append_line(self.path, f"{context.attempt} {members}")
        return True


class ThreadRecorder(JobCompleteHandler):
    """A synchronous handler that appends the id of the OS thread it ran on to ``path``."""

    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        import threading

        append_line(self.path, str(threading.get_native_id()))
        return True


class KeepsALock(JobCompleteHandler):
    """Holds a lock made in ``setup``: it cannot be sent to a child process."""

    def setup(self) -> None:
        self.lock = threading.Lock()

    def run_handler(self, context: JobCompleteContext) -> bool:
        with self.lock:
            return True


SETUP_ENTERED = threading.Event()
SETUP_MAY_RETURN = threading.Event()
SETUP_RETURNED = threading.Event()


class SlowSetup(JobCompleteHandler):
    """Its ``setup()`` waits (at most 20 s) for :data:`SETUP_MAY_RETURN`, as a handler's
    setup that calls a slow service would; :data:`SETUP_ENTERED` and
    :data:`SETUP_RETURNED` say it began and ended."""

    def setup(self) -> None:
        SETUP_ENTERED.set()
        SETUP_MAY_RETURN.wait(20)
        SETUP_RETURNED.set()

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class AddsAnAuditor(JobCompleteHandler):
    """Adds ``audit@example.com`` to its ``recipients`` (by default none) in ``setup()``."""

    recipients: list[str] = []  # noqa: RUF012 (a default, as authors write it)

    def setup(self) -> None:
        self.recipients.append("audit@example.com")

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True
