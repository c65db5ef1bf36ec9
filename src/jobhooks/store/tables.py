"""The schema, in SQLAlchemy Core. Times are UTC seconds since the epoch (floats)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "attempts",
    "completions",
    "job_streaks",
    "job_types",
    "metadata",
    "runs",
    "tokens",
]

metadata = MetaData()

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("agent_id", String(36)),
    Column("label", String(200)),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

completions = Table(
    "completions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("source", String(16), nullable=False),
    Column("agent_id", String(36), nullable=False),
    Column("username", Text, nullable=False),
    Column("client_machine", Text, nullable=False),
    Column("job_id", String(36), nullable=False),
    Column("job_type", Text, nullable=False),
    Column("job_type_id", String(36), nullable=False),
    Column("operation_type", Integer, nullable=False),
    Column("job_result", Integer, nullable=False),
    Column("certificate_id", BigInteger),
    Column("request_timestamp", Float),
    Column("current_retry_count", Integer, nullable=False),
    Column("retry_count_computed", Boolean, nullable=False),
    Column("message", Text),
    Column("job_history_id", BigInteger),
    Column("idempotency_key", String(200)),
    # Ids are UUIDv7, so the primary key already orders completions by time.
    # Every secondary index on a random key (agent, job) costs a page write
    # per row at each commit; only the ones the check-in needs are here.
    Index(
        "uq_completions_idempotency",
        "agent_id",
        "idempotency_key",
        unique=True,
        sqlite_where=Column("idempotency_key").isnot(None),
        postgresql_where=Column("idempotency_key").isnot(None),
    ),
    Index(
        "uq_completions_job_history",
        "agent_id",
        "job_history_id",
        unique=True,
        sqlite_where=Column("job_history_id").isnot(None),
        postgresql_where=Column("job_history_id").isnot(None),
    ),
)

runs = Table(
    "handler_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "completion_id",
        String(36),
        ForeignKey("completions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("handler", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("total_attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("worker", String(64)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("duration", Float),
    Column("last_error", Text),
    Index("ix_runs_completion", "completion_id"),
    Index("ix_runs_due", "status", "due_at"),
)

attempts = Table(
    "run_attempts",
    metadata,
    Column(
        "run_id", String(36), ForeignKey("handler_runs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("number", Integer, primary_key=True),
    Column("worker", String(64)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("duration", Float, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
    Column("traceback", Text),
)

job_types = Table(
    "job_types",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", Text, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("first_seen", Float, nullable=False),
)

job_streaks = Table(
    "job_streaks",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("consecutive_failures", Integer, nullable=False),
    Column("last_received_at", Float, nullable=False),
)
