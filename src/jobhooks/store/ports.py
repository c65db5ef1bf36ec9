"""What each part of jobhooks needs from the store, as narrow protocols."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from jobhooks.store.records import CheckinReceipt, ClaimedRun, NewCompletion, RunOutcome

__all__ = ["CheckInWithin", "CheckinStore", "PollerStore", "WorkerStore"]

T = TypeVar("T")

CheckInWithin = Callable[[Sequence[NewCompletion]], list[CheckinReceipt]]
"""Stores reports in an open transaction, as the check-in does; one receipt per report."""


class CheckinStore(Protocol):
    """What the check-in API needs: store reports, durably, before answering."""

    async def check_in(self, completion: NewCompletion) -> CheckinReceipt:
        """Store one report (with its runs) and return once it is committed."""
        ...


class WorkerStore(Protocol):
    """What a worker needs: claim due runs under a lease and report how they went."""

    async def claim(
        self, worker: str, limit: int, leases: dict[str, float], dead: Sequence[str] = ()
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` due runs to ``worker``, first those the ``dead`` held."""
        ...

    async def dead_nodes(self) -> list[str]:
        """The processes that are gone, whose runs may be taken back."""
        ...

    async def finish(self, outcome: RunOutcome) -> None:
        """Record the end of an attempt (a worker that lost its lease adds history only)."""
        ...

    def next_due(self) -> float | None:
        """When the earliest waiting run becomes due (None when nothing waits)."""
        ...

    def set_local_worker(self, worker: LocalWorker | None) -> None:
        """Let check-ins hand runs straight to this process's worker."""
        ...


class LocalWorker(Protocol):
    """A worker in the same process as the check-in API, taking runs without a claim."""

    def reserve(self, count: int) -> tuple[str, int]:
        """Reserve up to ``count`` slots (negative: give back); returns (worker id, granted)."""
        ...

    def deliver(self, runs: Sequence[ClaimedRun]) -> None:
        """Take committed runs reserved earlier; called from the writer thread."""
        ...


class PollerStore(Protocol):
    """What the poller needs: reads, and writes that store completions together with
    its own position in one transaction."""

    @property
    def engine(self) -> Engine:
        """The engine to read from (writes go through :meth:`transact`)."""
        ...

    async def transact(self, work: Callable[[Connection, float, CheckInWithin], T]) -> T:
        """Run ``work(connection, now, check_in)`` in one committed transaction."""
        ...

    async def read(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a read function ``function(engine, ...)`` off the event loop."""
        ...

    async def dead_nodes(self) -> list[str]:
        """The processes that are gone (a lease they hold may be taken at once)."""
        ...
