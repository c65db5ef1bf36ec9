"""Digests: a registration's runs that collect a group's completions into one.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("handler_runs", sa.Column("group_key", sa.Text))
    op.create_table(
        "open_digests",
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("group_key", sa.Text, primary_key=True),
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("handler_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("closes_at", sa.Float, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )
    op.create_index("ix_open_digests_run", "open_digests", ["run_id"])
    op.create_table(
        "digest_members",
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("handler_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column(
            "completion_id",
            sa.String(36),
            sa.ForeignKey("completions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("trigger", sa.Text),
    )
    op.create_index("ix_digest_members_completion", "digest_members", ["completion_id"])


def downgrade() -> None:
    op.drop_table("digest_members")
    op.drop_table("open_digests")
    with op.batch_alter_table("handler_runs") as table:
        table.drop_column("group_key")
