"""How many synchronous handlers (and isolated children) run at once: ``[server] threads``."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["Lapsed", "SlotsClosed", "ThreadSlots"]


class SlotsClosed(Exception):
    """The worker stopped while this run waited for a slot: it was not started."""


class Lapsed(Exception):
    """The run's lease ran out while it waited for a slot: it was not started (another
    worker may hold it by now)."""


class ThreadSlots:
    """A counted limit shared by the synchronous lane and the isolated runs.

    The lane takes a slot without awaiting (:meth:`take` with what to do once one is
    free); an isolated run awaits one with ``async with``. Either way slots go to
    those waiting in the order they asked. Event-loop only.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"thread slots must be at least 1, not {size}")
        self._free = size
        self._waiting: deque[Callable[[], bool]] = deque()
        self._refuse: dict[Callable[[], bool], Callable[[], None]] = {}
        """How to tell an ``async with`` waiter it will not get a slot (see :meth:`close`)."""
        self._closed = False

    @property
    def free(self) -> int:
        """Slots nobody holds."""
        return self._free

    def take(self, when_free: Callable[[], bool]) -> bool:
        """Take a slot now (True), or queue ``when_free``: it is called holding a slot once
        one frees up, and returns False if it no longer wants it (the slot then goes on)."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        self._waiting.append(when_free)
        return False

    def give(self) -> None:
        """Give a slot back: to the first who still waits, else to the free ones."""
        while self._waiting:
            if self._waiting.popleft()():
                return
        self._free += 1

    def close(self) -> None:
        """The worker stops: those waiting in ``async with`` (and any who ask from now on)
        get :class:`SlotsClosed` instead of a slot; slots still come back as runs end."""
        self._closed = True
        refusals, self._refuse = self._refuse, {}
        for refuse in refusals.values():
            refuse()

    async def __aenter__(self) -> None:
        if self._closed:
            raise SlotsClosed("the worker stopped before this run could start")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def granted() -> bool:
            self._refuse.pop(granted, None)
            if future.done():  # cancelled, or refused by close(), while it waited
                return False
            future.set_result(None)
            return True

        def refuse() -> None:
            if not future.done():
                future.set_exception(SlotsClosed("the worker stopped before this run could start"))

        if self.take(granted):
            return
        self._refuse[granted] = refuse
        try:
            await future
        except asyncio.CancelledError:
            self._refuse.pop(granted, None)
            if future.done() and not future.cancelled() and future.exception() is None:
                self.give()  # granted as it was cancelled: pass it on
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.give()
