"""When a failed attempt is tried again: exponential backoff with jitter. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from jobhooks.store.records import RunStatus

__all__ = ["MAX_DELAY", "RetryDecision", "backoff_delay", "decide"]

MAX_DELAY = 6 * 3600.0
JITTER = 0.25


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What becomes of a run after an attempt: its new status and when it is next due."""

    status: RunStatus
    due_at: float


def backoff_delay(backoff: float, attempt: int, jitter: float) -> float:
    """Seconds before the retry after failed attempt number ``attempt`` (1-based).

    ``backoff * 2**(attempt-1)``, spread by ±25% with ``jitter`` in [0, 1)
    so that runs failing together do not retry together; at most six hours.
    """
    base = backoff * 2.0 ** (attempt - 1)
    return min(MAX_DELAY, base * (1 - JITTER + 2 * JITTER * jitter))


def decide(
    succeeded: bool,
    attempt: int,
    max_attempts: int,
    backoff: float,
    now: float,
    jitter: float,
    final: bool = False,
) -> RetryDecision:
    """succeeded; failed with a retry due later; or dead when no attempts are left, or
    at once when the failure is ``final`` (the handler raised ``PermanentFailure``)."""
    if succeeded:
        return RetryDecision(RunStatus.SUCCEEDED, now)
    if final or attempt >= max_attempts:
        return RetryDecision(RunStatus.DEAD, now)
    return RetryDecision(RunStatus.FAILED, now + backoff_delay(backoff, attempt, jitter))
