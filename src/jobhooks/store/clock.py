"""Time as the database server counts it, for nodes on several machines.

Nodes on PostgreSQL compare times each other wrote: heartbeats, leases, when a
run is due. A machine whose clock is a few seconds off would judge a live node
gone (and run its runs again) or see new runs as not due yet. Each node
therefore reads its own clock corrected by the offset to the server's,
measured when the store opens and again with every heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, text

__all__ = ["DatabaseClock"]

_JITTER = 0.2
"""Offsets closer than this to the current one are round-trip noise: not applied."""


class DatabaseClock:
    """``local()`` plus the measured offset to the database server's clock (seconds since
    the epoch). Before any measurement (and on SQLite, where every process shares one
    machine's clock) it is ``local()``."""

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self._local = local
        self.offset = 0.0

    def __call__(self) -> float:
        return self._local() + self.offset

    def measure(self, connection: Connection) -> float:
        """Read the server's clock on ``connection`` (PostgreSQL) and adopt the offset,
        taking the round trip's midpoint as the moment it was read. Returns the offset."""
        if connection.dialect.name != "postgresql":
            return self.offset
        before = self._local()
        server = float(
            connection.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
        )
        after = self._local()
        offset = server - (before + after) / 2
        if abs(offset - self.offset) > _JITTER:
            self.offset = offset
        return self.offset
