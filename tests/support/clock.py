"""A clock tests move by hand, for code that takes ``clock=`` (seconds since the epoch)."""

from __future__ import annotations

import time


class ManualClock:
    """Starts at the real time; only :meth:`advance` moves it."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds
