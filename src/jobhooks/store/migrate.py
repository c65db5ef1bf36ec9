"""Schema migrations (Alembic), the same on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from jobhooks.errors import SchemaOutOfDate, StoreError
from jobhooks.store.deadline import overdue, watch
from jobhooks.store.engine import sqlite_path
from jobhooks.store.failures import describe_failure

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


def upgrade(engine: Engine) -> None:
    """Run every migration the database lacks."""
    config = _config()
    with _exclusive(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two nodes upgrading at once: the second waits, then finds nothing to do.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7262514)")
        _known(MigrationContext.configure(connection).get_current_revision())
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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
