"""Schema migrations (Alembic), the same on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from jobhooks.errors import SchemaOutOfDate, StoreError
from jobhooks.store.clock import DatabaseClock
from jobhooks.store.deadline import overdue, watch
from jobhooks.store.engine import sqlite_path
from jobhooks.store.failures import describe_failure
from jobhooks.store.nodes import STALE_AFTER, NodeIdentity, process_exists
from jobhooks.store.tables import nodes

__all__ = ["current_revision", "ensure_current", "head_revision", "upgrade"]


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "jobhooks.store:migrations")
    return config


def head_revision() -> str:
    """The newest migration this version of jobhooks knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with watch() as watched:
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            if watched.tripped:
                raise overdue(exc) from exc
            raise


@contextlib.contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    # Two processes starting on a new SQLite file would both create its tables;
    # a lock file beside it lets one migrate while the other waits.
    path = sqlite_path(str(engine.url)) if engine.dialect.name == "sqlite" else None
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = open(f"{path}.migrate-lock", "w")  # noqa: SIM115  (held across the yield)
    except OSError as exc:
        raise StoreError(f"cannot write in {path.parent}: {describe_failure(exc)}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _known(revision: str | None) -> None:
    """Raise :class:`StoreError` when ``revision`` is none of this version's migrations:
    a newer jobhooks migrated the database (or it is another program's)."""
    if revision is None:
        return
    script = ScriptDirectory.from_config(_config())
    if revision not in {migration.revision for migration in script.walk_revisions()}:
        raise StoreError(
            f"the database schema is at revision {revision}, which this jobhooks does not "
            f"know (it knows up to {head_revision()}): a newer jobhooks migrated it. Run "
            "that version, or restore a backup made before the upgrade"
        )


def _breaking(current: str | None) -> list[tuple[str, str]]:
    """The migrations from ``current`` to the head that a jobhooks still running at
    ``current`` cannot work with, each with why (its ``stops_older_nodes``), oldest first."""
    script = ScriptDirectory.from_config(_config())
    found = []
    for migration in script.iterate_revisions("head", current or "base"):
        why = getattr(migration.module, "stops_older_nodes", None)
        if why:
            found.append((migration.revision, str(why)))
    return found[::-1]


def _running(connection: Connection, now: float) -> list[str]:
    """The jobhooks processes running on the database, by their heartbeats (as
    :mod:`jobhooks.store.nodes` tells the gone from the alive)."""
    if not inspect(connection).has_table(nodes.name):
        return []
    me = NodeIdentity.of_this_process()
    query = select(
        nodes.c.id,
        nodes.c.host,
        nodes.c.boot_id,
        nodes.c.pid,
        nodes.c.pid_started,
        nodes.c.heartbeat_at,
    ).where(nodes.c.stopped_at.is_(None), nodes.c.heartbeat_at >= now - STALE_AFTER)
    running = []
    for row in connection.execute(query.order_by(nodes.c.id)):
        if me.same_machine(row.host, row.boot_id) and not process_exists(row.pid, row.pid_started):
            continue
        running.append(f"{row.id} (heartbeat {max(now - row.heartbeat_at, 0):.0f} s ago)")
    return running


def _refuse_under_older_nodes(connection: Connection, current: str | None, now: float) -> None:
    """Raise :class:`StoreError` when a migration still to run breaks the jobhooks processes
    running on the database (they are at ``current``, or they would not have started)."""
    breaking = _breaking(current)
    if not breaking:
        return
    running = _running(connection, now)
    if not running:
        return
    revision, why = breaking[0]
    raise StoreError(
        f"cannot upgrade the schema from {current} to {head_revision()} while jobhooks runs "
        f"on the database: revision {revision} is not additive ({why}). Stop every serve, "
        f"worker and poll process using it ({', '.join(running)}), run the upgrade, then "
        "start them with this version"
    )


def upgrade(engine: Engine, *, clock: Callable[[], float] | None = None) -> None:
    """Run every migration the database lacks.

    Refused (:class:`StoreError`) while jobhooks processes run on the database and one of
    those migrations is one they cannot work with; on SQLite, also when the database
    cannot be written (it would otherwise open, and fail at its first write).
    """
    config = _config()
    with _exclusive(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two nodes upgrading at once: the second waits, then finds nothing to do.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7262514)")
        current = MigrationContext.configure(connection).get_current_revision()
        _known(current)
        if clock is None:  # heartbeats are written in the database server's time
            clock = DatabaseClock()
            clock.measure(connection)
        now = clock()
        _refuse_under_older_nodes(connection, current, now)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        if connection.dialect.name == "sqlite":
            # A read-only file (or folder) opens, and reads, without a complaint: a write
            # here says so now, not at the first heartbeat or check-in.
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")


def ensure_current(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the schema is at this version's head (a
    :class:`StoreError` when it is ahead of it)."""
    current, head = current_revision(engine), head_revision()
    _known(current)
    if current != head:
        found = f"at revision {current}" if current else "not created yet"
        raise SchemaOutOfDate(
            f"the database schema is {found}, this jobhooks needs revision {head}: "
            "run 'jobhooks db upgrade --config PATH' first"
        )
