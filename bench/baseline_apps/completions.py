"""Cheap "task done" records: a counter plus the wall-clock time of the latest completion."""

from __future__ import annotations

import sqlite3
import threading
import time

import redis

__all__ = ["RedisCompletions", "SqliteCompletions"]


class RedisCompletions:
    """Counter and last-completion time kept in two Redis keys."""

    COUNT_KEY = "baseline:done:count"
    LAST_KEY = "baseline:done:last"

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self._url)
        return self._client

    def record(self) -> None:
        pipe = self._redis().pipeline(transaction=False)
        pipe.incr(self.COUNT_KEY)
        pipe.set(self.LAST_KEY, repr(time.time()))
        pipe.execute()

    def read(self) -> tuple[int, float]:
        count, last = self._redis().mget(self.COUNT_KEY, self.LAST_KEY)
        return int(count or 0), float(last or 0.0)

    def reset(self) -> None:
        self._redis().delete(self.COUNT_KEY, self.LAST_KEY)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SqliteCompletions:
    """Counter and last-completion time kept in a one-row table of a WAL SQLite file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("pragma journal_mode=wal")
            conn.execute("pragma synchronous=normal")
            conn.execute(
                "create table if not exists done "
                "(id integer primary key check (id = 1), n integer not null, "
                "last real not null)"
            )
            conn.execute("insert or ignore into done values (1, 0, 0.0)")
            self._local.conn = conn
        return conn

    def record(self) -> None:
        self._conn().execute(
            "update done set n = n + 1, last = max(last, ?) where id = 1", (time.time(),)
        )

    def read(self) -> tuple[int, float]:
        n, last = self._conn().execute("select n, last from done where id = 1").fetchone()
        return int(n), float(last)

    def reset(self) -> None:
        self._conn().execute("update done set n = 0, last = 0.0 where id = 1")

    def close(self) -> None:
        """Close this thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
