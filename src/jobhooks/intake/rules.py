"""Notification rules: whether a registration runs for a completion (``when``), and why.

Decided in the transaction that stores the completion (the store hands each
rule the job's streak, see :class:`~jobhooks.store.records.JobMoment`), so a
decision and the streak it rests on are always the same. The logic is here,
pure: a moment in, a trigger (or the sentence saying why not) out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobhooks.registry.matching import WhenRules
from jobhooks.sdk.enums import JobResult
from jobhooks.sdk.trigger import Trigger
from jobhooks.store.records import JobMoment, RuleDecision

__all__ = ["NotificationRule", "ordinal", "rehearse"]

_RESULTS = {
    "success": JobResult.SUCCESS,
    "warning": JobResult.WARNING,
    "failure": JobResult.FAILURE,
}
_ORDER = (
    "recovered",
    "failure-streak",
    "first-failure",
    "still-failing",
    "failure",
    "warning",
    "success",
)
"""When a completion fires several of a registration's triggers, the one its run records."""
_MARKS = frozenset({"failure", "first-failure", "failure-streak", "still-failing"})
"""Triggers that count as the registration having fired for the job's streak."""
_STATEFUL = frozenset({"failure-streak", "still-failing", "recovered"})
_CACHED = 1024
"""How many "not sent" decisions a rule keeps (they repeat: most completions fire nothing)."""


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st`` ..."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.0f}s"


def _moment(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _job(moment: JobMoment) -> str:
    where = f" on {moment.client_machine}" if moment.client_machine else ""
    return f"{moment.job_type} job {moment.job_id[:8]}…{where}"


@dataclass(frozen=True, slots=True)
class NotificationRule:
    """A registration's ``when`` as the store asks it (see
    :class:`~jobhooks.store.records.Rule`)."""

    rules: WhenRules
    _unsent: dict[tuple[JobResult, int, int, bool], RuleDecision] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Decisions not to run, by what they rest on (see :meth:`decide`)."""

    @property
    def stateful(self) -> bool:
        """True when it needs to know whether it fired for the job's streak."""
        return not _STATEFUL.isdisjoint(self.rules.triggers)

    def decide(self, moment: JobMoment) -> RuleDecision:
        """Run or not for this completion; the trigger says why it runs, the note why not."""
        # Whether it fires, and the sentence when it does not, depend only on the result,
        # the streak before and after, and whether it fired for the streak (and, for
        # still-failing once it has, on the time since): such decisions are kept.
        key = (moment.result, moment.before, moment.streak, moment.fired_at is not None)
        timed = key[3] and self.rules.repeat_every is not None
        known = None if timed else self._unsent.get(key)
        if known is not None:
            return known
        matched = [
            kind for kind in _ORDER if kind in self.rules.triggers and self._fires(kind, moment)
        ]
        if not matched:
            decision = RuleDecision(None, f"not sent: {self._why_not(moment)}")
            if not timed and len(self._unsent) < _CACHED:
                self._unsent[key] = decision
            return decision
        kind = matched[0]
        since = datetime.fromtimestamp(moment.since, UTC) if moment.since is not None else None
        streak = moment.before if kind == "recovered" else moment.streak
        trigger = Trigger(kind, streak, since, self._reason(kind, moment))
        return RuleDecision(trigger, marks=any(kind in _MARKS for kind in matched))

    def _fires(self, kind: str, moment: JobMoment) -> bool:
        failed = moment.result is JobResult.FAILURE
        if kind in _RESULTS:
            return moment.result is _RESULTS[kind]
        if kind == "first-failure":
            return failed and moment.before == 0
        if kind == "failure-streak":
            # Past the Nth failure too while the streak never fired it: its ``streak`` was
            # lowered, or it was registered, while the job was failing.
            at = self.rules.streak
            return failed and (
                moment.streak == at or (moment.streak > at and moment.fired_at is None)
            )
        if kind == "still-failing":
            every = self.rules.repeat_every
            return (
                failed
                and moment.fired_at is not None
                and every is not None
                and moment.at - moment.fired_at >= every
            )
        if kind == "recovered":
            ended = moment.result in (JobResult.SUCCESS, JobResult.WARNING)
            return ended and moment.before > 0 and moment.fired_at is not None
        return False

    def _reason(self, kind: str, moment: JobMoment) -> str:
        job = _job(moment)
        since = f" since {_moment(moment.since)}" if moment.since is not None else ""
        if kind == "recovered":
            return (
                f"{job} recovered ({moment.result.display}) after {moment.before} consecutive "
                f"failure{'s' if moment.before != 1 else ''}{since}"
            )
        if kind == "still-failing":
            assert moment.fired_at is not None
            return (
                f"still failing: {ordinal(moment.streak)} consecutive failure of {job}{since}; "
                f"last notice {_duration(moment.at - moment.fired_at)} ago"
            )
        if kind in ("failure-streak", "first-failure") or moment.streak:
            return f"{ordinal(moment.streak)} consecutive failure of {job}{since}"
        return f"{job} ended with {moment.result.display}"

    def _why_not(self, moment: JobMoment) -> str:
        triggers = self.rules.triggers
        if moment.result is JobResult.FAILURE:
            what = f"{ordinal(moment.streak)} consecutive failure"
            needs = self._failure_needs(moment)
        elif moment.result in (JobResult.SUCCESS, JobResult.WARNING):
            what = moment.result.display
            if moment.before:
                what += f" after {moment.before} consecutive failures"
            needs = [f"fires on {_RESULTS[k].display}" for k in triggers if k in _RESULTS]
            if "recovered" in triggers and moment.before:
                needs.append("those failures never fired it, so it does not say recovered")
            elif "recovered" in triggers:
                needs.append(
                    "says recovered only when a streak that fired it ends, and the job was not "
                    "failing"
                )
            if not needs:
                needs.append("fires on failures only")
        else:
            what = f"result {moment.result.display}, which neither starts nor ends a streak"
            needs = []
        return f"{what}, {'; '.join(needs)}" if needs else what

    def _failure_needs(self, moment: JobMoment) -> list[str]:
        triggers = self.rules.triggers
        needs: list[str] = []
        if "failure-streak" in triggers:
            at = self.rules.streak
            needs.append(f"fires at {at}" if moment.streak < at else f"fired at {at}")
        if "first-failure" in triggers and moment.before:
            needs.append("fires on a first failure")
        if "still-failing" in triggers and self.rules.repeat_every is not None:
            if moment.fired_at is not None:
                wait = self.rules.repeat_every - (moment.at - moment.fired_at)
                needs.append(f"repeats in {_duration(max(wait, 0.0))}")
            elif "failure-streak" not in triggers:
                needs.append("repeats only once it fired for this streak")
        if "failure" in triggers or needs:
            return needs
        needs = [f"fires on {_RESULTS[k].display}" for k in triggers if k in _RESULTS]
        if "recovered" in triggers:
            needs.append("fires when a streak that fired it ends")
        return needs


def rehearse(
    rule: NotificationRule,
    result: JobResult,
    streak: int,
    *,
    job_type: str = "Inventory",
    job_id: str = "00000000-0000-0000-0000-000000000000",
    client_machine: str = "",
    at: float = 0.0,
    spacing: float = 3600.0,
) -> RuleDecision:
    """What ``rule`` decides for a completion of ``result`` when the job has ``streak``
    consecutive failures (with it, for a failure; before it, for a success or a warning):
    the failures before it are played through the rule first, ``spacing`` seconds apart,
    so whether it already fired for them counts as it would (``jobhooks test-handler``)."""
    failures = streak - 1 if result is JobResult.FAILURE else streak
    start = at - spacing * max(failures, 0)
    fired_at: float | None = None
    for number in range(1, max(failures, 0) + 1):
        moment = JobMoment(
            JobResult.FAILURE, number - 1, number, start, start + spacing * (number - 1),
            fired_at if number > 1 else None, job_type, job_id, client_machine,
        )  # fmt: skip
        if rule.decide(moment).marks:
            fired_at = moment.at
    after = streak if result is JobResult.FAILURE else 0
    before = max(failures, 0)
    since = start if (after or before) else None
    last = JobMoment(
        result, before, after, since, at, fired_at if before else None,
        job_type, job_id, client_machine,
    )  # fmt: skip
    return rule.decide(last)
