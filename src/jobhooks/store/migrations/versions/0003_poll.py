"""Pull mode: the poller's position and lease per platform, the job history rows it
has acted on, and each job's newest finished run.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_state",
        sa.Column("feed", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("cursor", sa.BigInteger),
        sa.Column("cursor_start", sa.Float),
        sa.Column("window_start", sa.Float),
        sa.Column("horizon", sa.Float),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("owner", sa.String(120)),
        sa.Column("lease_until", sa.Float, nullable=False),
        sa.Column("caught_up_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "poll_rows",
        sa.Column("feed", sa.String(32), primary_key=True),
        sa.Column("job_history_id", sa.BigInteger, primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("retry_streak", sa.Integer, nullable=False),
        sa.Column("operation_start", sa.Float),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("completion_id", sa.String(36)),
    )
    op.create_table(
        "poll_jobs",
        sa.Column("feed", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("job_history_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("retry_streak", sa.Integer, nullable=False),
    )
    op.create_index("ix_poll_rows_job", "poll_rows", ["feed", "job_id", "job_history_id"])
    op.create_index(
        "ix_poll_rows_open",
        "poll_rows",
        ["feed", "job_history_id"],
        sqlite_where=sa.column("state") == "open",
        postgresql_where=sa.column("state") == "open",
    )


def downgrade() -> None:
    op.drop_index("ix_poll_rows_open", table_name="poll_rows")
    op.drop_index("ix_poll_rows_job", table_name="poll_rows")
    op.drop_table("poll_jobs")
    op.drop_table("poll_rows")
    op.drop_table("poll_state")
