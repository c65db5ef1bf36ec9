"""The dashboard: completion counts per time bucket, agents seen, signing keys, and an
index of runs by status and handler. Counts and agents are filled from the
completions already stored.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FAILURE = 4


def _floor(column: str, step: int) -> str:
    """SQL for the start of the ``step``-second bucket of an epoch-seconds column."""
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(floor({column} / {step}) AS BIGINT) * {step}"
    return f"CAST({column} / {step} AS INTEGER) * {step}"


def upgrade() -> None:
    op.create_table(
        "completion_stats",
        sa.Column("dimension", sa.String(8), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("subject", sa.String(36), primary_key=True),
        sa.Column("job_result", sa.Integer, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "agent_summary",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("client_machine", sa.Text, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("last_completion_id", sa.String(36), nullable=False),
        sa.Column("completions", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "signing_keys",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_runs_status_handler", "handler_runs", ["status", "handler", "id"])

    for dimension, subject, step in (
        ("all", "''", 60),
        ("type", "job_type_id", 3600),
        ("agent", "agent_id", 3600),
    ):
        bucket = _floor("received_at", step)
        op.execute(
            "INSERT INTO completion_stats (dimension, bucket, subject, job_result, shard, count) "
            f"SELECT '{dimension}', {bucket}, {subject}, job_result, 0, count(*) "
            # By position: PostgreSQL refuses a constant ('' for "all") in GROUP BY.
            "FROM completions GROUP BY 2, 3, 4"
        )
    op.execute(
        "INSERT INTO agent_summary (id, client_machine, username, first_seen, last_seen, "
        "last_completion_id, completions, failures) "
        "SELECT totals.agent_id, latest.client_machine, latest.username, totals.first_seen, "
        "latest.received_at, totals.last_id, totals.total, totals.failures "
        "FROM (SELECT agent_id, min(received_at) AS first_seen, max(id) AS last_id, "
        f"count(*) AS total, sum(CASE WHEN job_result = {FAILURE} THEN 1 ELSE 0 END) AS failures "
        "FROM completions GROUP BY agent_id) AS totals "
        "JOIN completions AS latest ON latest.id = totals.last_id"
    )


def downgrade() -> None:
    op.drop_index("ix_runs_status_handler", table_name="handler_runs")
    for table in ("signing_keys", "agent_summary", "completion_stats"):
        op.drop_table(table)
