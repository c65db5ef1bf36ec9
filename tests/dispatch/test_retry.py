"""Retry timing: exponential backoff with ±25% jitter, capped; dead at max_attempts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobhooks.dispatch.retry import JITTER, MAX_DELAY, RetryDecision, backoff_delay, decide
from jobhooks.store.records import RunStatus

backoffs = st.floats(min_value=0, max_value=86_400, allow_nan=False, allow_infinity=False)
attempts = st.integers(min_value=1, max_value=100)
jitters = st.floats(min_value=0, max_value=1, exclude_max=True)
NOW = 1_800_000_000.0


@given(backoffs, attempts, jitters)
def test_the_delay_is_within_a_quarter_of_backoff_doubling_per_attempt(
    backoff: float, attempt: int, jitter: float
) -> None:
    base = backoff * 2.0 ** (attempt - 1)

    delay = backoff_delay(backoff, attempt, jitter)

    assert JITTER == 0.25
    assert 0 <= delay <= MAX_DELAY
    assert delay <= base * 1.25 * (1 + 1e-12)
    assert delay >= min(MAX_DELAY, base * 0.75) * (1 - 1e-12)


@given(backoffs.filter(lambda b: b > 0), attempts)
def test_jitter_spans_the_whole_band(backoff: float, attempt: int) -> None:
    base = backoff * 2.0 ** (attempt - 1)
    if base * 1.25 > MAX_DELAY:
        assert backoff_delay(backoff, attempt, 0.999999) == MAX_DELAY
        return

    assert backoff_delay(backoff, attempt, 0.0) == pytest.approx(base * 0.75)
    assert backoff_delay(backoff, attempt, 0.5) == pytest.approx(base)
    assert backoff_delay(backoff, attempt, 0.999999) == pytest.approx(base * 1.25, rel=1e-5)


@given(backoffs, st.integers(min_value=1, max_value=99), jitters)
def test_a_later_retry_never_comes_sooner(backoff: float, attempt: int, jitter: float) -> None:
    assert backoff_delay(backoff, attempt + 1, jitter) >= backoff_delay(backoff, attempt, jitter)


def test_the_delay_is_capped_at_six_hours() -> None:
    assert MAX_DELAY == 6 * 3600
    assert backoff_delay(10, 30, 0.5) == MAX_DELAY


@given(st.integers(min_value=1, max_value=100), backoffs, jitters)
def test_failures_are_retried_until_the_last_attempt_which_is_dead(
    max_attempts: int, backoff: float, jitter: float
) -> None:
    decisions = [
        decide(False, attempt, max_attempts, backoff, NOW, jitter)
        for attempt in range(1, max_attempts + 1)
    ]

    assert [d.status for d in decisions] == ["failed"] * (max_attempts - 1) + ["dead"]
    assert decisions[-1].due_at == NOW
    for attempt, decision in enumerate(decisions[:-1], start=1):
        assert decision.due_at == NOW + backoff_delay(backoff, attempt, jitter)


@given(attempts, st.integers(min_value=1, max_value=100), backoffs, jitters)
def test_a_success_ends_the_run_at_any_attempt(
    attempt: int, max_attempts: int, backoff: float, jitter: float
) -> None:
    decision = decide(True, attempt, max_attempts, backoff, NOW, jitter)

    assert (decision.status, decision.due_at) == ("succeeded", NOW)


@given(st.integers(min_value=1, max_value=100), backoffs, jitters)
def test_an_attempt_past_the_limit_is_dead_too(
    max_attempts: int, backoff: float, jitter: float
) -> None:
    # A run replayed after max_attempts was lowered by a reload.
    assert decide(False, max_attempts + 1, max_attempts, backoff, NOW, jitter).status == "dead"


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=0, max_value=99))
def test_a_final_failure_is_dead_whatever_attempts_are_left(max_attempts: int, left: int) -> None:
    attempt = max(1, max_attempts - left)
    decision = decide(False, attempt, max_attempts, 10.0, NOW, 0.5, final=True)
    assert decision == RetryDecision(RunStatus.DEAD, NOW)
    assert decide(True, attempt, max_attempts, 10.0, NOW, 0.5, final=True).status == (
        RunStatus.SUCCEEDED
    )
