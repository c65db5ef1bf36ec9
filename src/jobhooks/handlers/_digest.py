"""What the built-in handlers say about a digest: a title with the count, and one line per
completion (the first :data:`MAX_LISTED`, then "and N more")."""

from __future__ import annotations

from collections import Counter

from jobhooks import JobCompleteContext

__all__ = ["MAX_LISTED", "digest_lines", "digest_title"]

MAX_LISTED = 50
"""How many completions a digest's message lists one by one."""


def _only(values: list[str]) -> str | None:
    distinct = set(values)
    return values[0] if len(distinct) == 1 and values[0] else None


def digest_title(context: JobCompleteContext) -> str:
    """``12 jobs on orch01.example.com: 10 Failure, 2 Warning`` (the job type too when
    every completion has the same)."""
    group = context.group
    results = Counter(member.job_result.display for member in group)
    counts = ", ".join(f"{count} {result}" for result, count in results.most_common())
    job_type = _only([member.job_type for member in group])
    machine = _only([member.client_machine for member in group])
    what = f"{len(group)} {job_type + ' ' if job_type else ''}jobs"
    return f"{what}{' on ' + machine if machine else ''}: {counts}"


def _line(member: JobCompleteContext) -> str:
    line = (
        f"- {member.job_type} job {member.job_id} {member.job_result.display} "
        f"on {member.client_machine or '(unknown machine)'}"
    )
    if member.message:
        first = member.message.strip().splitlines()[0] if member.message.strip() else ""
        line += f": {first[:160]}"
    if member.trigger is not None:
        line += f" [{member.trigger.kind}]"
    return line


def digest_lines(context: JobCompleteContext) -> list[str]:
    """One line per completion of the digest, oldest first, at most :data:`MAX_LISTED`."""
    group = context.group
    lines = [_line(member) for member in group[:MAX_LISTED]]
    if len(group) > MAX_LISTED:
        lines.append(f"... and {len(group) - MAX_LISTED} more")
    return lines
