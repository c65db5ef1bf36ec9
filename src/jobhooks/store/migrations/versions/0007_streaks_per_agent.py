"""Streaks per agent: a job's failure streak, and which registrations fired for it, are kept
per (agent, job), so one agent's reports of a job id never add to or end another's.

Existing rows take the agent of their job's newest stored completion; a row whose job
has no completion left (retention removed them) is dropped: no agent can be told, and
that streak starts again with the job's next failure.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Not additive: a jobhooks from before this revision still running on the database would
# write streaks without an agent (and ON CONFLICT on keys that no longer exist), so every
# failed check-in it took was refused. The upgrade is refused while such a node runs.
stops_older_nodes = (
    "it keys job_streaks and rule_state by agent, which a jobhooks from before it cannot "
    "write: it would refuse every failed check-in"
)

# The agent of each streak's job, from its newest completion: one pass over the
# completions with a window function (completions have no index on job_id, so a lookup
# per streak row would scan them once per row).
_NEWEST_AGENTS = (
    "INSERT INTO streak_agents (job_id, agent_id) SELECT job_id, agent_id FROM ("
    "SELECT job_id, agent_id, row_number() OVER "
    "(PARTITION BY job_id ORDER BY received_at DESC, id DESC) AS newest FROM completions "
    "WHERE job_id IN (SELECT job_id FROM job_streaks UNION SELECT job_id FROM rule_state)"
    ") AS ranked WHERE newest = 1"
)
_BY_AGENT = "JOIN streak_agents a ON a.job_id = old.job_id"


def _streaks(name: str, *, per_agent: bool) -> None:
    op.create_table(
        name,
        sa.Column("job_id", sa.String(36), primary_key=True),  # leads: read by job id
        *([sa.Column("agent_id", sa.String(36), primary_key=True)] if per_agent else []),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_received_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
    )


def _fired(name: str, *, per_agent: bool) -> None:
    # Per agent, the job id leads: what fired is read by job id.
    keys = ("job_id", "agent_id", "handler") if per_agent else ("handler", "job_id")
    widths = {"job_id": 36, "agent_id": 36, "handler": 200}
    op.create_table(
        name,
        *(sa.Column(key, sa.String(widths[key]), primary_key=True) for key in keys),
        sa.Column("fired_at", sa.Float, nullable=False),
    )


def _rebuild(
    name: str, create: Callable[[str], None], columns: str, select: str, rest: str
) -> None:
    """Replace table ``name`` by one ``create`` makes, holding what ``select`` gives for
    ``columns`` from the old table (as ``old``, followed by ``rest``: a join, a grouping)."""
    create(f"{name}_rebuilt")
    op.execute(f"INSERT INTO {name}_rebuilt ({columns}) SELECT {select} FROM {name} old {rest}")
    op.drop_table(name)
    op.rename_table(f"{name}_rebuilt", name)


def upgrade() -> None:
    op.create_table(
        "streak_agents",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
    )
    op.execute(_NEWEST_AGENTS)
    _rebuild(
        "job_streaks",
        lambda name: _streaks(name, per_agent=True),
        "job_id, agent_id, consecutive_failures, last_received_at, started_at",
        "old.job_id, a.agent_id, consecutive_failures, last_received_at, started_at",
        _BY_AGENT,
    )
    _rebuild(
        "rule_state",
        lambda name: _fired(name, per_agent=True),
        "job_id, agent_id, handler, fired_at",
        "old.job_id, a.agent_id, handler, fired_at",
        _BY_AGENT,
    )
    op.drop_table("streak_agents")


def downgrade() -> None:
    _rebuild(
        "job_streaks",
        lambda name: _streaks(name, per_agent=False),
        "job_id, consecutive_failures, last_received_at, started_at",
        "job_id, max(consecutive_failures), max(last_received_at), min(started_at)",
        "GROUP BY job_id",
    )
    _rebuild(
        "rule_state",
        lambda name: _fired(name, per_agent=False),
        "handler, job_id, fired_at",
        "handler, job_id, max(fired_at)",
        "GROUP BY handler, job_id",
    )
