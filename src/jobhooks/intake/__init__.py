"""Intake: a completion report becomes what the store keeps and the runs it starts.

The first stage of the pipeline (check-in or pull mode -> intake -> store <-
dispatch): validate and normalise a report, plan its runs from the registry
snapshot in force, and the lease policy those runs are held under. No HTTP and
no SQL here.
"""

from jobhooks.intake.planning import LeasePolicy, RunPlanner
from jobhooks.intake.report import MAX_IDEMPOTENCY_KEY, read_report
from jobhooks.intake.stage import Intake

__all__ = ["MAX_IDEMPOTENCY_KEY", "Intake", "LeasePolicy", "RunPlanner", "read_report"]
