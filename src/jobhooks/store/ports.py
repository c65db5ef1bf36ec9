"""What each part of jobhooks needs from the store, as narrow protocols."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobhooks.store.records import CheckinReceipt, ClaimedRun, NewCompletion, RunOutcome

__all__ = ["CheckinStore", "WorkerStore"]


class CheckinStore(Protocol):
    """What the check-in API needs: store reports, durably, before answering."""

    async def check_in(self, completion: NewCompletion) -> CheckinReceipt:
        """Store one report (with its runs) and return once it is committed."""
        ...


class WorkerStore(Protocol):
    """What a worker needs: claim due runs under a lease and report how they went."""

    async def claim(self, worker: str, limit: int, leases: dict[str, float]) -> list[ClaimedRun]:
        """Lease up to ``limit`` due runs to ``worker``."""
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
