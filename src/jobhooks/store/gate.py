"""When not to try to connect: a moment after an attempt that took long and failed.

A database server that does not answer (hung, or its host gone) costs each attempt to
connect the whole connect timeout. Without a gate, every write group, every read and
every heartbeat would wait it out in turn, and a check-in could wait several of them
before being told "not stored". After such an attempt, the gate refuses new
connections at once for a while, saying why and when the next attempt is made.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from jobhooks.errors import DatabaseUnreachable
from jobhooks.store.failures import describe_failure

__all__ = ["MAX_WAIT", "SLOW_ATTEMPT", "WAIT_FACTOR", "ConnectGate"]

T = TypeVar("T")

SLOW_ATTEMPT = 1.0
"""Seconds a failed attempt must have taken for the gate to close: a server that refuses
at once (down, restarting) is tried again at once."""
WAIT_FACTOR = 2.0
"""After a slow failed attempt, no other is made for this many times as long as it took,
so that a server that does not answer holds at most one caller in three."""
MAX_WAIT = 30.0
"""The longest wait, in seconds, before the next attempt: how long a server that answers
again may go unnoticed."""


class ConnectGate:
    """Makes the attempts to connect to one database, and refuses them for a while after
    a slow one failed (raising :class:`~jobhooks.errors.DatabaseUnreachable`).

    ``clock`` says when it is now (tests move it by hand); how long an attempt took is
    measured by :func:`time.monotonic`. Safe to use from several threads.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._closed: tuple[str, float] | None = None
        """Why the last slow attempt failed, and until when no other is made."""

    def attempt(self, connect: Callable[[], T], failures: type[Exception]) -> T:
        """``connect()``, unless the gate is closed; a ``failures`` exception it raises after
        :data:`SLOW_ATTEMPT` seconds or more closes the gate."""
        with self._lock:
            closed = self._closed
        if closed is not None:
            problem, until = closed
            left = until - self._clock()
            if left > 0:
                raise DatabaseUnreachable(problem, math.ceil(left))
        started = time.monotonic()
        try:
            connection = connect()
        except failures as exc:
            took = time.monotonic() - started
            if took >= SLOW_ATTEMPT:
                self.close(describe_failure(exc), took)
            raise
        with self._lock:
            self._closed = None
        return connection

    def close(self, problem: str, took: float) -> None:
        """Refuse attempts for :data:`WAIT_FACTOR` times ``took`` seconds (at most
        :data:`MAX_WAIT`), saying ``problem``: an attempt failed after ``took`` seconds."""
        wait = min(WAIT_FACTOR * took, MAX_WAIT)
        with self._lock:
            self._closed = (problem, self._clock() + wait)
