"""Notification rules: when each job's streak began, which registrations fired for it,
why each run exists, and why a matching registration did not run.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_streaks", sa.Column("started_at", sa.Float))
    op.execute("UPDATE job_streaks SET started_at = last_received_at")
    op.create_table(
        "rule_state",
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("fired_at", sa.Float, nullable=False),
    )
    op.add_column("handler_runs", sa.Column("trigger", sa.Text))
    op.add_column("completions", sa.Column("rule_notes", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("completions") as table:
        table.drop_column("rule_notes")
    with op.batch_alter_table("handler_runs") as table:
        table.drop_column("trigger")
    op.drop_table("rule_state")
    with op.batch_alter_table("job_streaks") as table:
        table.drop_column("started_at")
