"""Pull mode: the JobHistoryIds skipped between rows read by id, kept with the position
that passed them (they were kept in the polling process's memory, so a restart or a
lease handover forgot them and a row that became visible late was never read).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_gaps",
        sa.Column("feed", sa.String(32), primary_key=True),
        sa.Column("job_history_id", sa.BigInteger, primary_key=True),
        sa.Column("since", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("poll_gaps")
