"""Retention: delete completions (and their runs) older than the configured number of days."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, exists, select

from jobhooks.store.ids import id_floor
from jobhooks.store.nodes import purge_nodes
from jobhooks.store.records import RunStatus
from jobhooks.store.sessions import purge_sessions
from jobhooks.store.stats import purge_stats
from jobhooks.store.tables import attempts, completions, digest_members, runs

__all__ = ["NODES_KEPT", "purge_older_than"]

NODES_KEPT = 86_400.0
"""Seconds the rows of stopped processes and ended dashboard sessions are kept."""


def purge_older_than(
    connection: Connection, requests: Sequence[tuple[float, int]], now: float
) -> list[int]:
    """Delete up to ``limit`` completions received before ``cutoff`` whose runs are
    all finished (succeeded or dead), with their runs and attempts, and the
    dashboard's counts of buckets that ended before ``cutoff``; and the rows of processes
    and dashboard sessions gone for a day.

    A completion with a run still open, or in a digest still open, is kept until that
    run ends.
    """
    counts = []
    for cutoff, limit in requests:
        # A held run waits for its registration to be fixed: it has yet to run.
        open_run = exists().where(
            runs.c.completion_id == completions.c.id,
            runs.c.status.in_((*RunStatus.UNFINISHED, RunStatus.HELD)),
        )
        in_open_digest = exists().where(
            digest_members.c.completion_id == completions.c.id,
            runs.c.id == digest_members.c.run_id,
            runs.c.status.in_(RunStatus.UNFINISHED),
        )
        ids = [
            row.id
            for row in connection.execute(
                select(completions.c.id)
                .where(completions.c.id < id_floor(cutoff), ~open_run, ~in_open_digest)
                .limit(limit)
            )
        ]
        if ids:
            run_ids = select(runs.c.id).where(runs.c.completion_id.in_(ids))
            connection.execute(delete(attempts).where(attempts.c.run_id.in_(run_ids)))
            connection.execute(delete(runs).where(runs.c.completion_id.in_(ids)))
            connection.execute(delete(completions).where(completions.c.id.in_(ids)))
        purge_stats(connection, cutoff)
        purge_nodes(connection, now - NODES_KEPT)
        purge_sessions(connection, now - NODES_KEPT)
        counts.append(len(ids))
    return counts
