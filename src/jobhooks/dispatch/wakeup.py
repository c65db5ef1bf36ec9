"""Wake-ups between nodes through PostgreSQL LISTEN/NOTIFY.

A check-in on an API node notifies ``jobhooks_runs`` in the transaction that
stores its runs, so an idle worker on another machine claims them at once
instead of at its next poll; a reload notifies ``jobhooks_reload`` so every
node re-reads its configuration. Polling stays as the fallback: a lost
notification only delays work until the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from jobhooks.store.engine import server_timeouts

__all__ = ["PostgresWakeup"]

logger = logging.getLogger("jobhooks.wakeup")


class PostgresWakeup:
    """Listens on channels from a thread and calls their handlers on the event loop."""

    def __init__(self, url: str, handlers: dict[str, Callable[[str], None]]) -> None:
        self._url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._handlers = handlers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False

    def start(self) -> None:
        """Start listening (call from the event loop's thread)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="jobhooks-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _dispatch(self, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(payload)

    def _run(self) -> None:
        import psycopg  # the PostgreSQL extra; only nodes on PostgreSQL get here
        from psycopg.conninfo import make_conninfo

        delay = 0.5
        while not self._stop.is_set():
            try:
                conninfo = make_conninfo(self._url, **server_timeouts(self._url))
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    for channel in self._handlers:
                        connection.execute(f"LISTEN {channel}")
                    if not self.connected:
                        logger.info("listening for wake-ups on %s", ", ".join(self._handlers))
                    self.connected = True
                    delay = 0.5
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=1.0):
                            assert self._loop is not None
                            self._loop.call_soon_threadsafe(
                                self._dispatch, notice.channel, notice.payload
                            )
            except Exception as exc:
                if self.connected:
                    logger.warning(
                        "lost the wake-up connection (%s); polling until it is back", exc
                    )
                self.connected = False
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
