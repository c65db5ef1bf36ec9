"""Summaries the dashboard reads instead of scanning completions, kept in the check-in's
transaction: counts per time bucket (by result, job type and agent) and one row per agent.

Counts are time-bucketed with time leading the key, so a commit writes only
the newest pages of ``completion_stats``; each process adds to rows of its
own shard, so nodes sharing PostgreSQL never wait on each other's counters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, case, delete
from sqlalchemy.dialects import postgresql, sqlite

from jobhooks.sdk.enums import JobResult
from jobhooks.store.dialect import execute_many
from jobhooks.store.tables import agent_summary, completion_stats

__all__ = [
    "ALL",
    "BUCKET_SECONDS",
    "BY_AGENT",
    "BY_TYPE",
    "SHARDS",
    "purge_stats",
    "record_completions",
    "shard",
]

ALL = "all"
BY_TYPE = "type"
BY_AGENT = "agent"
BUCKET_SECONDS = {ALL: 60, BY_TYPE: 3600, BY_AGENT: 3600}
"""How many seconds one bucket of each dimension covers."""
SHARDS = 16
_FAILURE = int(JobResult.FAILURE)


def shard() -> int:
    """This process's shard of the counters."""
    return os.getpid() % SHARDS


def _count(insert: Any) -> Any:
    statement = insert(completion_stats)
    return statement.on_conflict_do_update(
        index_elements=[
            completion_stats.c.dimension,
            completion_stats.c.bucket,
            completion_stats.c.subject,
            completion_stats.c.job_result,
            completion_stats.c.shard,
        ],
        set_={"count": completion_stats.c.count + statement.excluded.count},
    )


def _summarise(insert: Any) -> Any:
    statement = insert(agent_summary)
    new, old = statement.excluded, agent_summary.c
    newer = new.last_seen >= old.last_seen
    return statement.on_conflict_do_update(
        index_elements=[old.id],
        set_={
            "client_machine": case((newer, new.client_machine), else_=old.client_machine),
            "username": case((newer, new.username), else_=old.username),
            "last_seen": case((newer, new.last_seen), else_=old.last_seen),
            "last_completion_id": case(
                (new.last_completion_id > old.last_completion_id, new.last_completion_id),
                else_=old.last_completion_id,
            ),
            "completions": old.completions + new.completions,
            "failures": old.failures + new.failures,
        },
    )


_COUNT = {"sqlite": _count(sqlite.insert), "postgresql": _count(postgresql.insert)}
_SUMMARISE = {"sqlite": _summarise(sqlite.insert), "postgresql": _summarise(postgresql.insert)}


def record_completions(
    connection: Connection, rows: Sequence[Mapping[str, Any]], shard_number: int
) -> None:
    """Count stored completions rows (in id order) into the summaries, in the open transaction.

    Rows are written sorted by key, so concurrent transactions on PostgreSQL
    take the row locks in the same order.
    """
    counts: dict[tuple[str, int, str, int], int] = {}
    first_seen: dict[str, float] = {}
    latest: dict[str, Mapping[str, Any]] = {}
    received: float | None = None
    minute = hour = 0
    for row in rows:
        if row["received_at"] != received:
            # A batch is usually stored at one time: its buckets are worked out once.
            received = row["received_at"]
            minute = int(received // 60) * 60
            hour = int(received // 3600) * 3600
        result, agent = row["job_result"], row["agent_id"]
        for key in (
            (ALL, minute, "", result),
            (BY_TYPE, hour, row["job_type_id"], result),
            (BY_AGENT, hour, agent, result),
        ):
            counts[key] = counts.get(key, 0) + 1
        if agent not in latest:
            first_seen[agent] = row["received_at"]
        latest[agent] = row
    totals: dict[str, list[int]] = {}
    for (dimension, _bucket, subject, result), count in counts.items():
        if dimension == BY_AGENT:
            total = totals.setdefault(subject, [0, 0])
            total[0] += count
            total[1] += count if result == _FAILURE else 0
    dialect = connection.dialect.name
    execute_many(
        connection,
        _COUNT[dialect],
        [
            {
                "dimension": dimension,
                "bucket": bucket,
                "subject": subject,
                "job_result": result,
                "shard": shard_number,
                "count": count,
            }
            for (dimension, bucket, subject, result), count in sorted(counts.items())
        ],
    )
    execute_many(
        connection,
        _SUMMARISE[dialect],
        [
            {
                "id": agent,
                "client_machine": latest[agent]["client_machine"],
                "username": latest[agent]["username"],
                "first_seen": first_seen[agent],
                "last_seen": latest[agent]["received_at"],
                "last_completion_id": latest[agent]["id"],
                "completions": totals[agent][0],
                "failures": totals[agent][1],
            }
            for agent in sorted(latest)
        ],
    )


def purge_stats(connection: Connection, cutoff: float) -> None:
    """Delete the counts of buckets that ended before ``cutoff``, and agents not seen since."""
    for dimension, seconds in BUCKET_SECONDS.items():
        connection.execute(
            delete(completion_stats).where(
                completion_stats.c.dimension == dimension,
                completion_stats.c.bucket < int(cutoff) - seconds,
            )
        )
    connection.execute(delete(agent_summary).where(agent_summary.c.last_seen < cutoff))
