"""When not to try to connect: while a database server that did not answer is not known
to answer again.

A database server that does not answer (hung, or its host gone) costs each attempt to
connect the whole connect timeout. Without a gate, every write group, every read and
every heartbeat would wait it out in turn, and a check-in could wait several of them
before being told "not stored". After such an attempt, the gate refuses new
connections at once, saying why, and one thread of its own tries to connect in the
background until the server answers (or refuses at once, as a restarting server does);
then the gate opens again. No caller waits for the server while it is gone, and its
return is noticed within about one connect timeout (an attempt under way as it comes
back may have to time out first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from jobhooks.errors import DatabaseUnreachable
from jobhooks.store.failures import describe_failure

__all__ = ["PROBE_PAUSE", "SLOW_ATTEMPT", "Closable", "ConnectGate"]

T = TypeVar("T", bound="Closable")

SLOW_ATTEMPT = 1.0
"""Seconds a failed attempt must have taken for the gate to close: a server that refuses
at once (down, restarting) is tried by every caller, each learning why at once."""
PROBE_PAUSE = 1.0
"""Seconds between the end of one background attempt that failed slowly and the next."""


class Closable(Protocol):
    """A driver connection: the background attempt closes the one it makes."""

    def close(self) -> object: ...


class ConnectGate:
    """Makes the attempts to connect to one database, and refuses them at once (raising
    :class:`~jobhooks.errors.DatabaseUnreachable`) from an attempt that took
    :data:`SLOW_ATTEMPT` seconds or more and failed until one made in the background
    connects or fails at once.

    ``pause`` is the seconds between background attempts (tests pass 0). Safe to use
    from several threads.
    """

    def __init__(self, pause: float = PROBE_PAUSE) -> None:
        self._pause = pause
        self._lock = threading.Lock()
        self._problem: str | None = None
        """Why the last slow attempt failed, while the gate is closed."""
        self._stopped = threading.Event()
        self._probe: threading.Thread | None = None
        self._opened = 0
        """How many times the gate opened: an attempt that began before it last opened
        and fails slowly afterwards is old news, and does not close it again."""

    @property
    def closed(self) -> bool:
        """Whether new connections are refused now."""
        return self._problem is not None

    def attempt(self, connect: Callable[[], T], failures: type[Exception]) -> T:
        """``connect()``, unless the gate is closed; a ``failures`` exception it raises after
        :data:`SLOW_ATTEMPT` seconds or more closes the gate."""
        problem, opened = self._problem, self._opened
        if problem is not None:
            raise DatabaseUnreachable(problem)
        started = time.monotonic()
        try:
            return connect()
        except failures as exc:
            if time.monotonic() - started >= SLOW_ATTEMPT:
                self._close(describe_failure(exc), opened, connect, failures)
            raise

    def stop(self) -> None:
        """Open the gate and end the background attempts (the engine was disposed)."""
        with self._lock:
            self._open()
            self._stopped.set()

    def _open(self) -> None:
        """Let callers connect again (under the lock)."""
        self._problem = None
        self._probe = None  # not joined: an attempt under way ends within its timeout
        self._opened += 1

    def _close(
        self,
        problem: str,
        opened: int,
        connect: Callable[[], Closable],
        failures: type[Exception],
    ) -> None:
        with self._lock:
            if opened != self._opened:
                return  # the attempt began before the gate last opened
            self._problem = problem
            if self._probe is not None:
                return  # one is trying already
            self._stopped = threading.Event()
            self._probe = threading.Thread(
                target=self._try_until_answered,
                args=(connect, failures, self._stopped),
                name="jobhooks-reconnect",
                daemon=True,
            )
            self._probe.start()

    def _try_until_answered(
        self, connect: Callable[[], Closable], failures: type[Exception], stopped: threading.Event
    ) -> None:
        while not stopped.wait(self._pause):
            started = time.monotonic()
            try:
                connect().close()
            except failures as exc:
                if time.monotonic() - started >= SLOW_ATTEMPT:
                    with self._lock:
                        if not stopped.is_set():
                            self._problem = describe_failure(exc)
                    continue
            except Exception:  # any other error is the callers' to see
                pass
            break  # it answered, or failed at once: callers try for themselves again
        with self._lock:
            if not stopped.is_set():
                self._open()
