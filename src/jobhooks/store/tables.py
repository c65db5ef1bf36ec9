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
    "agent_summary",
    "attempts",
    "completion_stats",
    "completions",
    "digest_members",
    "job_streaks",
    "job_types",
    "metadata",
    "nodes",
    "open_digests",
    "poll_gaps",
    "poll_jobs",
    "poll_rows",
    "poll_state",
    "rule_state",
    "runs",
    "signing_keys",
    "tokens",
    "ui_sessions",
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
    # The registrations whose rules (``when``) did not fire for it, and why: a JSON list
    # of {"handler", "reason"}; NULL when every matching registration ran.
    Column("rule_notes", Text),
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
    # Why the run exists when its registration has rules: the Trigger as JSON.
    Column("trigger", Text),
    # A digest's group (its registration's group_by values as JSON); NULL for a run of
    # one completion. Its completions are in digest_members.
    Column("group_key", Text),
    Index("ix_runs_completion", "completion_id"),
    Index("ix_runs_due", "status", "due_at"),
    # Statuses and handlers are few, so each commit writes at the tail of a few
    # (status, handler) ranges; the dashboard counts and lists runs from it alone.
    Index("ix_runs_status_handler", "status", "handler", "id"),
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

open_digests = Table(
    "open_digests",
    metadata,
    # The digest each group is collecting into, until it closes (its time is up, it is
    # full, or a worker took its run): one row per (registration, group).
    Column("handler", String(200), primary_key=True),
    Column("group_key", Text, primary_key=True),
    Column("run_id", String(36), ForeignKey("handler_runs.id", ondelete="CASCADE"), nullable=False),
    Column("closes_at", Float, nullable=False),
    Column("size", Integer, nullable=False),
    Index("ix_open_digests_run", "run_id"),
)

digest_members = Table(
    "digest_members",
    metadata,
    # The completions of a digest run, in the order they joined it, each with its trigger.
    Column(
        "run_id", String(36), ForeignKey("handler_runs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("position", Integer, primary_key=True),
    Column(
        "completion_id",
        String(36),
        ForeignKey("completions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("trigger", Text),
    Index("ix_digest_members_completion", "completion_id"),
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
    # Jobs whose last completions failed (see store.streaks): one row per agent's job in a
    # streak (another agent's reports of the same job id neither add to it nor end it).
    # The job id leads the key: a batch's streaks are read by job id.
    Column("job_id", String(36), primary_key=True),
    Column("agent_id", String(36), primary_key=True),
    Column("consecutive_failures", Integer, nullable=False),
    Column("last_received_at", Float, nullable=False),
    Column("started_at", Float),
)

rule_state = Table(
    "rule_state",
    metadata,
    # Which registrations fired for a job's ongoing streak, and when last: what
    # still-failing and recovered decide on. Removed when the streak ends.
    # The job id leads the key: what fired for a batch's jobs is read by job id.
    Column("job_id", String(36), primary_key=True),
    Column("agent_id", String(36), primary_key=True),
    Column("handler", String(200), primary_key=True),
    Column("fired_at", Float, nullable=False),
)

completion_stats = Table(
    "completion_stats",
    metadata,
    # Completions counted per time bucket, kept in the check-in's transaction:
    # 'all' per minute (subject ''), 'type' (job type id) and 'agent' (agent id)
    # per hour. Time leads the key, so a commit only writes the newest pages.
    Column("dimension", String(8), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("subject", String(36), primary_key=True),
    Column("job_result", Integer, primary_key=True),
    # Each process writes its own rows (summed when read), so nodes sharing
    # PostgreSQL never wait on each other's counters.
    Column("shard", Integer, primary_key=True),
    Column("count", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

agent_summary = Table(
    "agent_summary",
    metadata,
    # One row per agent seen: its machine, its last completion and running totals.
    Column("id", String(36), primary_key=True),
    Column("client_machine", Text, nullable=False),
    Column("username", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("last_completion_id", String(36), nullable=False),
    Column("completions", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    # Random keys shared by every node, such as the one that signs dashboard sessions.
    Column("name", String(32), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

poll_state = Table(
    "poll_state",
    metadata,
    # Pull mode: where the poller of one platform instance is, and which node polls.
    # ``feed`` is a short hash of the platform's URL, so pointing [platform] url at
    # another instance starts a new position instead of reusing a foreign one.
    Column("feed", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("cursor", BigInteger),
    Column("cursor_start", Float),
    Column("window_start", Float),
    Column("horizon", Float),
    Column("started_at", Float, nullable=False),
    Column("owner", String(120)),
    Column("lease_until", Float, nullable=False),
    Column("caught_up_at", Float),
    Column("updated_at", Float, nullable=False),
)

poll_rows = Table(
    "poll_rows",
    metadata,
    # Every job history row the poller has acted on: open (still running), done
    # (a completion exists), skipped (ended before ``start``), bad (malformed) or
    # gone (deleted while running). ``status`` is the final status as first seen,
    # which the retry count relies on: an acknowledgement later turns 5 into 4.
    Column("feed", String(32), primary_key=True),
    Column("job_history_id", BigInteger, primary_key=True),
    Column("job_id", String(36), nullable=False),
    Column("state", String(8), nullable=False),
    Column("status", Integer),
    Column("retry_streak", Integer, nullable=False),
    Column("operation_start", Float),
    Column("seen_at", Float, nullable=False),
    Column("completion_id", String(36)),
    Index("ix_poll_rows_job", "feed", "job_id", "job_history_id"),
    Index(
        "ix_poll_rows_open",
        "feed",
        "job_history_id",
        sqlite_where=Column("state") == "open",
        postgresql_where=Column("state") == "open",
    ),
)

poll_gaps = Table(
    "poll_gaps",
    metadata,
    # JobHistoryIds skipped between rows read by id, looked for again for a while (the
    # platform's database may show a row after rows with higher ids). Written with the
    # position that passed them, so a restart or another node keeps looking.
    Column("feed", String(32), primary_key=True),
    Column("job_history_id", BigInteger, primary_key=True),
    Column("since", Float, nullable=False),
)

poll_jobs = Table(
    "poll_jobs",
    metadata,
    # The newest finished run stored per job: where the next run's retry count starts.
    # One row per job, so the lookup stays O(log n) however often a job recurs.
    Column("feed", String(32), primary_key=True),
    Column("job_id", String(36), primary_key=True),
    Column("job_history_id", BigInteger, nullable=False),
    Column("status", Integer, nullable=False),
    Column("retry_streak", Integer, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    # Every running serve, worker or poll process: a heartbeat every few seconds, so
    # the runs (and the poller's lease) of a process that is gone are taken back at
    # once rather than when a lease runs out.
    Column("id", String(120), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("boot_id", String(64)),
    Column("pid", Integer, nullable=False),
    Column("pid_started", BigInteger),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
)

ui_sessions = Table(
    "ui_sessions",
    metadata,
    # Dashboard sign-ins: a session ends when its operator signs out or its token is
    # revoked, whatever copies of its cookie exist.
    Column("id", String(32), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float),
    Index("ix_ui_sessions_token", "token_id"),
)
