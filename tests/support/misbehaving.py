"""Handler types that break the rules a worker must survive, registered by the dispatch
tests as ``support.misbehaving:Class`` (each attempt must still end, and say how), and
:func:`process_ended` to see that a hanging one's process is gone."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise AttributeError("no message")


class _UnprintableExit(SystemExit):
    def __str__(self) -> str:
        raise AttributeError("no message")


class _BrokenNotes(Exception):
    @property
    def __notes__(self) -> list[str]:
        raise ValueError("no notes")


class _Unrepresentable:
    def __repr__(self) -> str:
        raise ValueError("no repr")


class _Unstorable:
    def __repr__(self) -> str:
        return "<bad\x00byte, lone \ud800 half>"


class _Classless:
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise ValueError("no class")

    def __repr__(self) -> str:
        return "<classless>"


class ReturnsClassless(JobCompleteHandler):
    """Returns an object whose ``__class__`` raises (so does ``inspect.isawaitable`` on it)."""

    def run_handler(self, context: JobCompleteContext) -> object:
        return _Classless()


class RaisesUnprintable(JobCompleteHandler):
    """Raises an exception whose ``__str__`` raises."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise _Unprintable()


class RaisesWithBrokenNotes(JobCompleteHandler):
    """Raises an exception whose ``__notes__`` raises (its traceback cannot be formatted)."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise _BrokenNotes("notes break")


class ExitsUnprintable(JobCompleteHandler):
    """Raises a ``SystemExit`` whose ``__str__`` raises."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise _UnprintableExit()


class ReturnsUnprintable(JobCompleteHandler):
    """Returns an object whose ``__repr__`` raises."""

    def run_handler(self, context: JobCompleteContext) -> object:
        return _Unrepresentable()


class AsyncRaisesCancelled(JobCompleteHandler):
    """Raises ``asyncio.CancelledError`` itself, without being cancelled."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        raise asyncio.CancelledError()


class AsyncAwaitsCancelled(JobCompleteHandler):
    """Awaits a task that was cancelled (its ``CancelledError`` reaches the handler)."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        task = asyncio.ensure_future(asyncio.sleep(10))
        task.cancel()
        await task
        return True


class AsyncBlocks(JobCompleteHandler):
    """Blocks the event loop ``seconds`` (``time.sleep`` in ``async def``), then succeeds."""

    seconds: float = 0.5

    async def run_handler(self, context: JobCompleteContext) -> bool:
        time.sleep(self.seconds)
        return True


class HangsWithPid(JobCompleteHandler):
    """Writes the id of its process to ``path``, then hangs for an hour."""

    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        Path(self.path).write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(3600)
        return True


class HangsWithAChild(JobCompleteHandler):
    """Starts a process of its own that sleeps an hour, writes that process's id to
    ``path``, then hangs for an hour (a handler that shells out and never returns)."""

    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        started = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(self.path).write_text(str(started.pid), encoding="utf-8")
        time.sleep(3600)
        return True


class WaitsForGate(JobCompleteHandler):
    """Appends ``<completion_id> <attempt>`` to ``path``, then blocks its thread until the
    file ``gate`` exists (10 s at most)."""

    path: str
    gate: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(f"{context.completion_id} {context.attempt}\n")
        deadline = time.monotonic() + 10
        while not Path(self.gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return True


async def _exits() -> bool:
    sys.exit(3)


class ReturnsExitingCoroutine(JobCompleteHandler):
    """A sync ``run_handler`` that returns a coroutine, which calls ``sys.exit(3)``."""

    def run_handler(self, context: JobCompleteContext) -> object:
        return _exits()


class AsyncReturnsExitingCoroutine(JobCompleteHandler):
    """An async ``run_handler`` that returns a coroutine, which calls ``sys.exit(3)``."""

    async def run_handler(self, context: JobCompleteContext) -> object:
        return _exits()


class ReturnsHuge(JobCompleteHandler):
    """Returns a 10 MB string instead of True (a response body, say)."""

    def run_handler(self, context: JobCompleteContext) -> object:
        return "x" * 10_000_000


class AsyncGathersAnExit(JobCompleteHandler):
    """Awaits ``asyncio.gather`` of a coroutine that calls ``sys.exit(3)`` (as a click
    command's ``main()`` does when it ends)."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        await asyncio.gather(_exits())
        return True


class AsyncTaskGroupExit(JobCompleteHandler):
    """Starts a task in an ``asyncio.TaskGroup`` that calls ``sys.exit(3)``."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        async with asyncio.TaskGroup() as group:
            group.create_task(_exits())
        return True


class RaisesUnstorable(JobCompleteHandler):
    """Raises an exception whose message holds a NUL and a lone surrogate (text no
    database stores: PostgreSQL refuses the NUL, SQLite and PostgreSQL the surrogate)."""

    def run_handler(self, context: JobCompleteContext) -> bool:
        raise ValueError("bad\x00byte, lone \ud800 half")


class ReturnsUnstorable(JobCompleteHandler):
    """Returns an object whose ``repr`` holds a NUL and a lone surrogate."""

    def run_handler(self, context: JobCompleteContext) -> object:
        return _Unstorable()


class SetupExits(JobCompleteHandler):
    """Calls ``sys.exit()`` in ``setup()``, as a script ported to a handler may."""

    def setup(self) -> None:
        sys.exit("no settings file")

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class SetupRaisesUnprintable(JobCompleteHandler):
    """Raises an exception whose ``__str__`` raises in ``setup()``."""

    def setup(self) -> None:
        raise _Unprintable()

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class AsyncSetup(JobCompleteHandler):
    """Checks its folder in an ``async def setup``: the folder never exists."""

    folder: str = "/nonexistent/folder"

    async def setup(self) -> None:  # type: ignore[override]
        if not Path(self.folder).is_dir():
            raise ValueError(f"property Folder: {self.folder} does not exist")

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class UnreadableProperty(JobCompleteHandler):
    """Declares a property whose annotation names nothing (a typo, a missing import)."""

    endpoint: Endpiont  # type: ignore[name-defined]  # noqa: F821

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class UnusableProperty(JobCompleteHandler):
    """Declares a property of a type no value in a file can be (a socket)."""

    connection: socket.socket

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


def process_ended(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie nobody reaped yet has too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class AsyncCancelsAThreadsCall(JobCompleteHandler):
    """Gives up after 0.3 s (an anyio cancel scope) on a call its thread makes back on the
    event loop, which would take 2 s."""

    async def run_handler(self, context: JobCompleteContext) -> bool:
        import anyio
        import anyio.from_thread
        import anyio.to_thread

        with anyio.move_on_after(0.3):
            await anyio.to_thread.run_sync(lambda: anyio.from_thread.run(anyio.sleep, 2))
        return True
