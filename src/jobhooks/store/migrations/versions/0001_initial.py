"""The first schema: tokens, completions, handler runs and their attempts, job types.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(36)),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "completions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("client_machine", sa.Text, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("job_type", sa.Text, nullable=False),
        sa.Column("job_type_id", sa.String(36), nullable=False),
        sa.Column("operation_type", sa.Integer, nullable=False),
        sa.Column("job_result", sa.Integer, nullable=False),
        sa.Column("certificate_id", sa.BigInteger),
        sa.Column("request_timestamp", sa.Float),
        sa.Column("current_retry_count", sa.Integer, nullable=False),
        sa.Column("retry_count_computed", sa.Boolean, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("job_history_id", sa.BigInteger),
        sa.Column("idempotency_key", sa.String(200)),
    )
    for name, column in (
        ("uq_completions_idempotency", "idempotency_key"),
        ("uq_completions_job_history", "job_history_id"),
    ):
        op.create_index(
            name,
            "completions",
            ["agent_id", column],
            unique=True,
            sqlite_where=sa.column(column).isnot(None),
            postgresql_where=sa.column(column).isnot(None),
        )
    op.create_table(
        "handler_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "completion_id",
            sa.String(36),
            sa.ForeignKey("completions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("total_attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float),
        sa.Column("worker", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("duration", sa.Float),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_runs_completion", "handler_runs", ["completion_id"])
    op.create_index("ix_runs_due", "handler_runs", ["status", "due_at"])
    op.create_table(
        "run_attempts",
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("handler_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("worker", sa.String(64)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("traceback", sa.Text),
    )
    op.create_table(
        "job_types",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
    )
    op.create_table(
        "job_streaks",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_received_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "job_streaks",
        "job_types",
        "run_attempts",
        "handler_runs",
        "completions",
        "tokens",
    ):
        op.drop_table(table)
