"""Where a poll's pages go: the store (one transaction per page), or a dry run's report."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobhooks.errors import LeaseLost
from jobhooks.poll.rows import NIL, Candidate
from jobhooks.store.pull import PageWrite, PolledRow, WriteOutcome

if TYPE_CHECKING:
    from jobhooks.poll.cycle import PollCycle

__all__ = ["DrySink", "Emitted", "PollReport", "Sink", "StoreSink"]

logger = logging.getLogger("jobhooks.poll")


@dataclass(frozen=True, slots=True)
class Emitted:
    """A completion created (or, in a dry run, that would be)."""

    job_history_id: int
    client_machine: str
    job_type: str
    job_type_id: uuid.UUID
    job_result: str
    current_retry_count: int
    handlers: tuple[str, ...]
    completion_id: str | None


@dataclass(slots=True)
class PollReport:
    """What one poll read and did."""

    mode: str = ""
    pages: int = 0
    rows: int = 0
    created: int = 0
    duplicates: int = 0
    opened: int = 0
    skipped: int = 0
    malformed: int = 0
    gone: int = 0
    emitted: list[Emitted] = field(default_factory=list)
    dry_run: bool = False


class Sink:
    """Where a poll's pages go: the store, or (dry run) a report."""

    def __init__(self, cycle: PollCycle, report: PollReport) -> None:
        self.cycle = cycle
        self.report = report

    async def write(self, write: PageWrite) -> None:
        """Take one page (or a change of position)."""
        raise NotImplementedError

    def _count(self, write: PageWrite, outcome: WriteOutcome) -> None:
        report = self.report
        if write.candidates and not write.initialize:
            report.pages += 1
            report.rows += len(write.candidates)
        report.created += len(outcome.created)
        report.duplicates += outcome.duplicates
        report.opened += outcome.opened
        report.skipped += outcome.skipped
        report.malformed += len(outcome.bad)
        report.gone += len(write.gone)
        for candidate in outcome.bad:
            logger.warning(
                "job history row %d is malformed and does not become a completion: %s",
                candidate.id,
                candidate.problem or "its fields cannot be stored",
            )
        for row_id_gone in write.gone:
            logger.warning(
                "job history row %d was deleted from the platform while it ran; "
                "no completion is created for it",
                row_id_gone,
            )


class StoreSink(Sink):
    """Stores each page in one transaction through the store's writer (the check-in path).

    Raises :class:`LeaseLost` when another node took the lease: nothing was written.
    """

    async def write(self, write: PageWrite) -> None:
        outcome = await self.cycle.store.pull.write_page(write)
        if outcome.lease_lost:
            raise LeaseLost("another node holds the poller's lease now; this node stops polling")
        self._count(write, outcome)
        for candidate, completion_id, count in outcome.created:
            self.report.emitted.append(_emitted(candidate, count, completion_id))
        if self.cycle.on_outcome is not None:
            self.cycle.on_outcome(outcome)


class DrySink(Sink):
    """Decides each page as a store would (from what is stored and what earlier pages
    decided), lists the completions it would create, and writes nothing."""

    def __init__(self, cycle: PollCycle, report: PollReport) -> None:
        super().__init__(cycle, report)
        self.chain: dict[str, tuple[int, int, int]] = {}
        self.horizon: float | None = None
        self.done: set[int] = set()
        self._in_order = asyncio.Lock()
        """Pages are decided one after the other, as the store commits them: a page read
        while the one before is decided must see its retry chains."""

    async def write(self, write: PageWrite) -> None:
        async with self._in_order:
            await self._decide(write)

    async def _decide(self, write: PageWrite) -> None:
        if write.initialize:
            self.horizon = write.horizon
        else:
            state = await self.cycle.store.pull.state(self.cycle.feed)
            if self.horizon is None and state is not None:
                self.horizon = state.horizon
        fresh = [c for c in write.candidates if c.id not in self.done]
        plan = await self.cycle.store.pull.plan(self.cycle.feed, fresh, self.horizon, self.chain)
        outcome = WriteOutcome(opened=len(plan.open), skipped=len(plan.skip), bad=list(plan.bad))
        for candidate, count in [*plan.emit, *plan.skip]:
            assert candidate.job_id is not None and candidate.status is not None
            self.done.add(candidate.id)
            link = (candidate.id, candidate.status, count)
            self.chain[candidate.job_id] = max(self.chain.get(candidate.job_id, (0, 0, 0)), link)
        for candidate, count in plan.emit:
            outcome.created.append((candidate, "", count))
            self.report.emitted.append(_emitted(candidate, count, None))
        self._count(write, outcome)


def _emitted(candidate: PolledRow, count: int, completion_id: str | None) -> Emitted:
    # What a page holds is the poller's own candidates: the parsed row came with it.
    assert isinstance(candidate, Candidate) and candidate.row is not None
    row = candidate.row
    fields = candidate.fields or {}
    return Emitted(
        job_history_id=candidate.id,
        client_machine=row.agent_machine,
        job_type=row.job_type,
        job_type_id=fields.get("job_type_id", NIL),
        job_result=row.result.display,
        current_retry_count=count,
        handlers=tuple(run.handler for run in candidate.runs),
        completion_id=completion_id,
    )
