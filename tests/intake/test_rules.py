"""Notification rules decide from a job's streak: at the moments the design names, once
where it says once, and with a sentence saying why (or why not)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobhooks.intake.rules import NotificationRule, ordinal, rehearse
from jobhooks.registry import WhenRules
from jobhooks.sdk.enums import JobResult
from jobhooks.store.records import JobMoment

F, S, W, U = JobResult.FAILURE, JobResult.SUCCESS, JobResult.WARNING, JobResult.UNKNOWN
JOB = "9f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
HOUR = 3600.0


def rule(*triggers: str, streak: int = 3, repeat_every: float | None = None) -> NotificationRule:
    return NotificationRule(WhenRules(triggers, streak, repeat_every))


def play(
    rule: NotificationRule, results: list[JobResult], spacing: float = HOUR
) -> list[str | None]:
    """Feed one job's completions to ``rule`` as the store does (the streak, and when the
    registration last fired for it); returns the trigger kind of each, None where it
    did not fire."""
    failures, since, fired_at = 0, None, None
    fired: list[str | None] = []
    for number, result in enumerate(results):
        at = 1_800_000_000.0 + number * spacing
        before = failures
        if result is F:
            failures, since = failures + 1, since if failures else at
        elif result in (S, W):
            failures = 0
        moment = JobMoment(
            result, before, failures, since if (failures or before) else None, at,
            fired_at if before else None, "WinCertInventory", JOB, "orch01.example.com",
        )  # fmt: skip
        decision = rule.decide(moment)
        fired.append(decision.trigger.kind if decision.trigger else None)
        if decision.trigger is None:
            assert decision.note and decision.note.startswith("not sent: ")
        if decision.marks and failures:
            fired_at = at
        if before and not failures:
            fired_at, since = None, None
    return fired


def test_result_triggers_fire_on_their_result_only() -> None:
    assert play(rule("success", "warning", "failure"), [S, W, F, U]) == [
        "success",
        "warning",
        "failure",
        None,
    ]


def test_first_failure_fires_once_per_streak() -> None:
    assert play(rule("first-failure"), [F, F, S, F, U, F, W, F]) == [
        "first-failure", None, None, "first-failure", None, None, None, "first-failure",
    ]  # fmt: skip


def test_a_streak_fires_at_its_nth_failure_once_and_recovered_ends_it() -> None:
    seen = play(rule("failure-streak", "recovered"), [F, F, F, F, F, S, F, F, S, F, F, F])
    assert seen == [
        None, None, "failure-streak", None, None, "recovered",
        None, None, None,  # a streak of two never fired it: no recovered notice
        None, None, "failure-streak",
    ]  # fmt: skip


def test_unknown_and_in_process_leave_the_streak_as_it_is() -> None:
    assert play(rule("failure-streak"), [F, U, F, JobResult.IN_PROCESS, F]) == [
        None, None, None, None, "failure-streak",
    ]  # fmt: skip


def test_still_failing_repeats_at_most_every_repeat_every() -> None:
    every_6h = rule("failure-streak", "still-failing", repeat_every=6 * HOUR)
    seen = play(every_6h, [F] * 16)  # one failure an hour
    assert [i + 1 for i, kind in enumerate(seen) if kind] == [3, 9, 15]
    assert seen[2] == "failure-streak" and seen[8] == seen[14] == "still-failing"


def test_the_reason_names_the_streak_the_job_the_machine_and_since_when() -> None:
    decision = rehearse(
        rule("failure-streak"), F, 3, job_type="WinCertInventory", job_id=JOB,
        client_machine="orch01.example.com", at=datetime(2026, 12, 4, 12, tzinfo=UTC).timestamp(),
    )  # fmt: skip
    assert decision.trigger is not None
    assert decision.trigger.kind == "failure-streak" and decision.trigger.streak == 3
    assert decision.trigger.reason == (
        "3rd consecutive failure of WinCertInventory job 9f0e1a2b… on orch01.example.com "
        "since 2026-12-04 10:00 UTC"
    )
    assert decision.trigger.since == datetime(2026, 12, 4, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("result", "streak", "note"),
    [
        (F, 2, "not sent: 2nd consecutive failure, fires at 3"),
        (F, 4, "not sent: 4th consecutive failure, fired at 3"),
        (S, 0, "not sent: Success, fires on failures only"),
        (U, 0, "not sent: result Unknown, which neither starts nor ends a streak"),
    ],
)
def test_a_rule_that_does_not_fire_says_why(result: JobResult, streak: int, note: str) -> None:
    decision = rehearse(rule("failure-streak"), result, streak)
    assert decision.trigger is None and decision.note == note


def test_recovered_after_a_streak_that_never_fired_says_so() -> None:
    decision = rehearse(rule("failure-streak", "recovered", streak=5), S, 2)
    assert decision.note == (
        "not sent: Success after 2 consecutive failures, "
        "those failures never fired it, so it does not say recovered"
    )


def test_recovered_for_a_job_that_was_not_failing_says_so() -> None:
    """A success is what "recovered" fires on, so "fires on failures only" was wrong."""
    decision = rehearse(rule("failure-streak", "recovered"), S, 0)
    assert decision.note == (
        "not sent: Success, says recovered only when a streak that fired it ends, "
        "and the job was not failing"
    )


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th",
    ]  # fmt: skip


results = st.lists(st.sampled_from([F, F, F, S, W, U]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(results, st.integers(min_value=1, max_value=5))
def test_at_most_one_streak_notice_per_streak_and_recovered_only_after_one(
    sequence: list[JobResult], at: int
) -> None:
    seen = play(rule("failure-streak", "recovered", streak=at), sequence)
    notices = 0  # failure-streak notices in the current streak
    for result, kind in zip(sequence, seen, strict=True):
        if kind == "failure-streak":
            notices += 1
            assert notices == 1, "a second notice in one streak"
        if kind == "recovered":
            assert notices == 1, "recovered without a notice for that streak"
        if result in (S, W):
            if notices:
                assert kind == "recovered", "a streak that fired ended without recovered"
            notices = 0


@settings(max_examples=200, deadline=None)
@given(results, st.floats(min_value=0.5, max_value=30.0))
def test_still_failing_never_comes_sooner_than_repeat_every(
    sequence: list[JobResult], hours: float
) -> None:
    spacing = HOUR / 2
    seen = play(
        rule("failure-streak", "still-failing", streak=1, repeat_every=hours * HOUR),
        sequence,
        spacing,
    )
    last: float | None = None
    for number, (result, kind) in enumerate(zip(sequence, seen, strict=True)):
        at = number * spacing
        if kind == "failure-streak":
            last = at
        elif kind == "still-failing":
            assert last is not None and at - last >= hours * HOUR
            last = at
        if result in (S, W):
            last = None


TRIGGER_SETS = [
    ("failure-streak", "recovered"),
    ("first-failure", "still-failing"),
    ("failure-streak", "still-failing", "recovered"),
    ("failure", "success"),
    ("warning", "recovered"),
]
LONG_LIVED = {
    triggers: rule(*triggers, repeat_every=2 * HOUR if "still-failing" in triggers else None)
    for triggers in TRIGGER_SETS
}


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(TRIGGER_SETS),
    st.sampled_from([F, S, W, U]),
    st.integers(min_value=0, max_value=6),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=5.0)),
)
def test_a_rule_that_decided_many_completions_decides_as_a_new_one(
    triggers: tuple[str, ...], result: JobResult, before: int, hours_since_fired: float | None
) -> None:
    # One rule object decides every completion of a registration, and keeps what it
    # decided not to send: what it kept must never change a decision.
    at = 1_800_000_000.0
    streak = before + 1 if result is F else (0 if result in (S, W) else before)
    fired_at = None if hours_since_fired is None or not before else at - hours_since_fired * HOUR
    since = at - 10 * HOUR if (streak or before) else None
    moment = JobMoment(
        result, before, streak, since, at, fired_at, "PEMInventory", JOB, "orch02.example.com"
    )
    fresh = NotificationRule(LONG_LIVED[triggers].rules)
    assert LONG_LIVED[triggers].decide(moment) == fresh.decide(moment)
