"""Which runs a completion starts, and how long a worker may hold one: decided once here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from jobhooks.intake.rules import NotificationRule
from jobhooks.registry.matching import DeliveryPolicy, Registry
from jobhooks.store.records import DigestPlan, PlannedRun

__all__ = ["LeasePolicy", "RunPlanner"]


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """How long a run may be held: its handler's timeout plus ``grace`` (``[server] lease``).

    A held run is taken back at once when its process is gone; the lease is the last
    resort for a run held by a process that left no heartbeat row.
    """

    grace: float

    def lease(self, policy: DeliveryPolicy) -> float:
        """Seconds a run of a handler with ``policy`` may be held."""
        return policy.timeout + self.grace

    @property
    def default(self) -> float:
        """The lease of a run whose handler is not registered (any more)."""
        return self.lease(DeliveryPolicy())

    def leases(self, registry: Registry) -> dict[str, float]:
        """The lease of each registered handler's runs."""
        return {handler.name: self.lease(handler.policy) for handler in registry.handlers}


class RunPlanner:
    """The runs a completion of a job type starts, per registry snapshot.

    A snapshot never changes, so its plans are kept until a reload swaps it.
    """

    def __init__(self, leases: LeasePolicy) -> None:
        self.leases = leases
        self._for: Registry | None = None
        self._plans: dict[uuid.UUID, tuple[PlannedRun, ...]] = {}

    def plan(self, registry: Registry, job_type_id: uuid.UUID) -> tuple[PlannedRun, ...]:
        """One planned run per registration matching ``job_type_id``, in registration order
        (each with its rule, which the store asks as it stores the completion), then one
        held run per quarantined registration that matches it (run once it is fixed)."""
        if registry is not self._for:
            self._for, self._plans = registry, {}
        planned = self._plans.get(job_type_id)
        if planned is None:
            planned = tuple(
                PlannedRun(
                    h.name,
                    h.policy.max_attempts,
                    self.leases.lease(h.policy),
                    None if h.when.always else NotificationRule(h.when),
                    None
                    if h.grouping is None
                    else DigestPlan(h.grouping.fields, h.grouping.wait, h.grouping.most),
                )
                for h in registry.for_job_type(job_type_id)
            ) + tuple(
                # Held one per completion (no digest): its grouping may be what is broken.
                PlannedRun(
                    q.name,
                    q.policy.max_attempts,
                    self.leases.lease(q.policy),
                    None if q.when.always else NotificationRule(q.when),
                    held=True,
                )
                for q in registry.held_for(job_type_id)
            )
            self._plans[job_type_id] = planned
        return planned
