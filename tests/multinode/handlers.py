"""Handler types that server and worker processes load as ``multinode.handlers:Class``.

Each execution appends one short line to a trace file in a single ``O_APPEND``
write, so the lines of processes running at once never interleave; the line
names the process, which tells the workers' shares apart.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler


def trace(path: str, *words: object) -> None:
    """Append one line (``words`` joined by spaces) in one write."""
    line = (" ".join(str(word) for word in words) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def trace_lines(path: str | Path) -> list[list[str]]:
    """The lines of a trace file, split into words (none if there is no file yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines() if line]


class Recorder(JobCompleteHandler):
    """Writes ``<completion_id> <attempt> <pid>`` per execution.

    With ``gate`` set it first waits (up to ``gate_timeout`` seconds) for that
    file to exist, so every worker holds some runs before any of them finishes.
    """

    path: str
    gate: str = ""
    gate_timeout: float = 30.0

    def run_handler(self, context: JobCompleteContext) -> bool:
        if self.gate:
            deadline = time.monotonic() + self.gate_timeout
            while not os.path.exists(self.gate):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gate {self.gate} never opened")
                time.sleep(0.01)
        trace(self.path, context.completion_id, context.attempt, os.getpid())
        return True


class StallsOnFirstAttempt(JobCompleteHandler):
    """Writes ``started <completion_id> <attempt> <pid>``; the first attempt then sleeps
    ``stall`` seconds (its worker is meant to die meanwhile), later ones write ``done``."""

    path: str
    stall: float = 30.0

    def run_handler(self, context: JobCompleteContext) -> bool:
        trace(self.path, "started", context.completion_id, context.attempt, os.getpid())
        if context.attempt == 1:
            time.sleep(self.stall)
        trace(self.path, "done", context.completion_id, context.attempt, os.getpid())
        return True


class DigestRecorder(JobCompleteHandler):
    """Writes ``digest <pid> <attempt> <id,id,...>``: the completions of each run's group."""

    path: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        members = ",".join(member.completion_id for member in context.group)
        trace(self.path, "digest", os.getpid(), context.attempt, members)
        return True
