"""Which runs a completion starts: one per matching registration, and a held one per
matching quarantined registration."""

from __future__ import annotations

import uuid

from support.reports import INVENTORY, MANAGEMENT

from jobhooks.handlers.log import LogHandler
from jobhooks.intake import LeasePolicy, RunPlanner
from jobhooks.registry import (
    DeliveryPolicy,
    RegisteredHandler,
    RegistrationProblem,
    Registry,
    WhenRules,
)


def test_a_quarantined_registration_gets_held_runs_with_its_own_policy_and_rules() -> None:
    audit = RegisteredHandler("audit", "log", LogHandler(), None)
    broken = RegistrationProblem(
        "page",
        ("handlers[1] 'page': property urls: environment variable PAGER is not set",),
        job_types=(INVENTORY,),
        holds=True,
        policy=DeliveryPolicy(timeout=5, max_attempts=2),
        when=WhenRules(("failure-streak",), streak=4),
    )
    unreadable = RegistrationProblem("handlers[2]", ("handlers[2]: name: is required",))
    kept = RegistrationProblem("audit", ("a reload found a problem",), kept=True, holds=True)
    registry = Registry([audit], [broken, unreadable, kept])
    planner = RunPlanner(LeasePolicy(grace=60))

    audit_run, page_run = planner.plan(registry, INVENTORY)
    assert (audit_run.handler, audit_run.held, audit_run.rule) == ("audit", False, None)
    assert (page_run.handler, page_run.held) == ("page", True)
    assert (page_run.max_attempts, page_run.lease) == (2, 65)
    assert page_run.rule is not None, "its rules decide at intake, as they will once it runs"
    assert [run.handler for run in planner.plan(registry, MANAGEMENT)] == ["audit"]
    assert [run.handler for run in planner.plan(registry, uuid.uuid4())] == ["audit"]
