"""PostgreSQL for the tests: one migrated template per session, a fresh database per test.

The server comes from ``JOBHOOKS_TEST_POSTGRES`` (a ``postgresql://`` URL whose
user may create databases; default :data:`DEFAULT_URL`). A test that needs it
fails, saying so, when it cannot be reached: a missing PostgreSQL never turns
into skipped tests.

Import the fixtures into a ``conftest.py`` to use them::

    from pg import pg_database, pg_empty_database, pg_server, pg_template  # noqa: F401
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "PostgresServer",
    "pg_database",
    "pg_empty_database",
    "pg_server",
    "pg_template",
]

ENV_VAR = "JOBHOOKS_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class PostgresServer:
    """The PostgreSQL server the suite runs against, reached through ``url``."""

    url: str
    """The maintenance database: databases are created and dropped from here."""

    def url_of(self, database: str) -> str:
        """The URL of ``database`` on this server (same user, host and options)."""
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def create(self, prefix: str, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``); returns its name."""
        name = f"{prefix}{secrets.token_hex(6)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.admin() as connection:
            connection.execute(statement)
        return name

    def drop(self, name: str) -> None:
        """Drop a database, ending whatever connections were left on it first."""
        with self.admin() as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def listeners(self, database: str, channel: str) -> int:
        """How many sessions on ``database`` have LISTENed on ``channel`` last."""
        with self.admin() as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query = %s",
                (database, f"LISTEN {channel}"),
            ).fetchone()
        assert row is not None
        return int(str(row[0]))


def _unreachable(url: str, exc: Exception) -> str:
    shown = make_url(url).render_as_string(hide_password=True)
    return (
        f"these tests need PostgreSQL, and {shown} cannot be reached: {exc}\n"
        f"Start a PostgreSQL server, or point the suite at one whose user may create "
        f"databases: {ENV_VAR}=postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """The PostgreSQL server of ``JOBHOOKS_TEST_POSTGRES``; fails the test if unreachable."""
    url = os.environ.get(ENV_VAR) or DEFAULT_URL
    if not url.startswith("postgresql://"):
        pytest.fail(f"{ENV_VAR} must be a postgresql:// URL, got {url!r}", pytrace=False)
    server = PostgresServer(url)
    problem = None
    try:
        with server.admin() as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        problem = _unreachable(url, exc)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return server


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> Iterator[str]:
    """A database migrated to the newest schema once per session; tests copy it."""
    from jobhooks.store.engine import connect
    from jobhooks.store.migrate import upgrade

    name = pg_server.create("jh_tpl_")
    try:
        engine = connect(pg_server.url_of(name), pool_size=1)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield name
    finally:
        pg_server.drop(name)


@pytest.fixture
def pg_database(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """The URL of a fresh, migrated database of its own, dropped after the test."""
    name = pg_server.create("jh_t_", template=pg_template)
    try:
        yield pg_server.url_of(name)
    finally:
        pg_server.drop(name)


@pytest.fixture
def pg_empty_database(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database without any schema, dropped after the test."""
    name = pg_server.create("jh_t_")
    try:
        yield pg_server.url_of(name)
    finally:
        pg_server.drop(name)
