"""Streaks per agent: a job's failure streak, and which registrations fired for it, are kept
per (agent, job), so one agent's reports of a job id never add to or end another's.

Existing rows take the agent of their job's newest stored completion.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NEWEST_AGENT = (
    "COALESCE((SELECT c.agent_id FROM completions c WHERE c.job_id = {table}.job_id "
    "ORDER BY c.received_at DESC LIMIT 1), '00000000-0000-0000-0000-000000000000')"
)


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


def upgrade() -> None:
    _streaks("job_streaks_new", per_agent=True)
    op.execute(
        "INSERT INTO job_streaks_new (agent_id, job_id, consecutive_failures, last_received_at, "
        f"started_at) SELECT {_NEWEST_AGENT.format(table='job_streaks')}, job_id, "
        "consecutive_failures, last_received_at, started_at FROM job_streaks"
    )
    op.drop_table("job_streaks")
    op.rename_table("job_streaks_new", "job_streaks")
    _fired("rule_state_new", per_agent=True)
    op.execute(
        "INSERT INTO rule_state_new (job_id, agent_id, handler, fired_at) SELECT job_id, "
        f"{_NEWEST_AGENT.format(table='rule_state')}, handler, fired_at FROM rule_state"
    )
    op.drop_table("rule_state")
    op.rename_table("rule_state_new", "rule_state")


def downgrade() -> None:
    _streaks("job_streaks_old", per_agent=False)
    op.execute(
        "INSERT INTO job_streaks_old (job_id, consecutive_failures, last_received_at, started_at) "
        "SELECT job_id, max(consecutive_failures), max(last_received_at), min(started_at) "
        "FROM job_streaks GROUP BY job_id"
    )
    op.drop_table("job_streaks")
    op.rename_table("job_streaks_old", "job_streaks")
    _fired("rule_state_old", per_agent=False)
    op.execute(
        "INSERT INTO rule_state_old (handler, job_id, fired_at) "
        "SELECT handler, job_id, max(fired_at) FROM rule_state GROUP BY handler, job_id"
    )
    op.drop_table("rule_state")
    op.rename_table("rule_state_old", "rule_state")
