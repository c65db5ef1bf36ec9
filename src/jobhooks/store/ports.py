"""What each part of jobhooks needs from the store, as narrow protocols.

:class:`jobhooks.store.Store` provides them all; a consumer names the one it
uses, so it sees (and a test fakes) only that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from jobhooks.store.records import CheckinReceipt, ClaimedRun, NewCompletion, RunOutcome

if TYPE_CHECKING:
    from jobhooks.store.pull import PullStore

__all__ = ["CheckinStore", "LocalWorker", "PollerStore", "WorkerStore"]


class CheckinStore(Protocol):
    """What the check-in needs: store reports, durably, before answering."""

    async def check_in(self, completion: NewCompletion) -> CheckinReceipt:
        """Store one report (with its runs) and return once it is committed."""
        ...


class LocalWorker(Protocol):
    """A worker in the same process as the check-in API, taking runs without a claim."""

    id: str
    """The name runs leased to it carry."""

    def reserve(self, count: int) -> tuple[str, int]:
        """Reserve up to ``count`` slots (negative: give back); returns (worker id, granted)."""
        ...

    def deliver(self, runs: Sequence[ClaimedRun]) -> None:
        """Take committed runs reserved earlier; called from the writer thread."""
        ...

    def wake_at(self, when: float) -> None:
        """Look for due runs at ``when`` (a digest closes then); called from the writer
        thread."""
        ...


class WorkerStore(Protocol):
    """What a worker needs: claim due runs under a lease and report how they went."""

    async def claim(
        self, worker: str, limit: int, leases: dict[str, float], dead: Sequence[str] = ()
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` due runs to ``worker``, first those the ``dead`` held."""
        ...

    async def finish(self, outcomes: Sequence[RunOutcome]) -> None:
        """Record the end of attempts, in one write (a worker that lost its lease adds
        history only)."""
        ...

    async def give_back(self, worker: str, run_ids: Sequence[str]) -> int:
        """Make runs ``worker`` took but never started wait again, as if never taken."""
        ...

    async def hold(self, worker: str, run_ids: Sequence[str]) -> int:
        """Hold runs ``worker`` took but cannot start: their registration is gone."""
        ...

    async def leased_to(self, worker: str, *, ended: bool = False) -> list[str]:
        """The open runs leased to ``worker`` (with ``ended``, those whose lease has ended)."""
        ...

    async def dead_nodes(self) -> list[str]:
        """The processes that are gone, whose runs may be taken back."""
        ...

    def set_local_worker(self, worker: LocalWorker | None) -> None:
        """Let check-ins hand runs straight to this process's worker."""
        ...


class PollerStore(Protocol):
    """What the poller needs: pull mode's part of the store, and who is gone (a lease held
    by a gone process is taken at once)."""

    @property
    def pull(self) -> PullStore:
        """Pull mode's lease, position, pages and catalog."""
        ...

    async def dead_nodes(self) -> list[str]:
        """The processes that are gone."""
        ...
