"""The intake stage: a report in, a stored completion and its runs out."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from jobhooks.intake.planning import RunPlanner
from jobhooks.intake.report import read_report
from jobhooks.registry.matching import Registry
from jobhooks.store.ports import CheckinStore
from jobhooks.store.records import CheckinReceipt, NewCompletion, PlannedRun
from jobhooks.store.tokens import TokenInfo

__all__ = ["Intake"]


class Intake:
    """Takes reports from the check-in (and plans the runs of pull mode's rows) against the
    registry in force, and stores them."""

    def __init__(
        self, store: CheckinStore, registry: Callable[[], Registry], planner: RunPlanner
    ) -> None:
        self._store = store
        self._registry = registry
        self.planner = planner

    def plan(self, job_type_id: uuid.UUID) -> tuple[PlannedRun, ...]:
        """The runs a completion of ``job_type_id`` starts now."""
        return self.planner.plan(self._registry(), job_type_id)

    def completion(
        self, body: bytes, token: TokenInfo, idempotency_key: str | None = None
    ) -> NewCompletion:
        """A check-in as the store takes it (see :func:`~jobhooks.intake.report.read_report`
        for the :class:`~jobhooks.errors.ReportRejected` it raises)."""
        fields = read_report(body, token, idempotency_key)
        return NewCompletion(fields, self.plan(fields["job_type_id"]), idempotency_key)

    async def check_in(
        self, body: bytes, token: TokenInfo, idempotency_key: str | None = None
    ) -> CheckinReceipt:
        """Validate, plan and store one report; returns once it is committed."""
        return await self._store.check_in(self.completion(body, token, idempotency_key))
