"""How the parts of the store reach the database: reads on the engine's pool from a thread,
writes through the one group-commit writer.

A read that fails is a :class:`StoreError` in plain words (the driver's text
goes to the log), and once the database file is lost every read is refused,
as every write is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from jobhooks.errors import StoreError
from jobhooks.store.deadline import DEADLINE, overdue_problem, watch
from jobhooks.store.engine import for_reads
from jobhooks.store.failures import describe_failure
from jobhooks.store.writer import BatchOperation, GroupCommitWriter

__all__ = ["READ_WAIT", "Database"]

logger = logging.getLogger("jobhooks.store")

P = ParamSpec("P")
T = TypeVar("T")
Payload = TypeVar("Payload")
Result = TypeVar("Result")


READ_WAIT = DEADLINE + 5.0
"""Seconds a read is waited for: past the deadline that breaks a PostgreSQL connection."""


class Database:
    """The engine and the writer one store's parts share."""

    def __init__(self, engine: Engine, writer: GroupCommitWriter) -> None:
        self.engine = engine
        self.writer = writer
        self._reads = for_reads(engine)

    def read_now(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``query(connection, ...)`` here, on a connection of the pool."""
        lost = self.writer.lost
        if lost is not None:
            raise lost
        stuck = self.writer.stuck
        if stuck is not None:  # a read would hang on the same disk
            raise StoreError(f"the database cannot be read: {stuck}")
        try:
            with watch() as watched, self._reads.connect() as connection:
                return query(connection, *args, **kwargs)
        except SQLAlchemyError as exc:
            logger.debug("a read failed: %s", exc)
            problem = overdue_problem() if watched.tripped else describe_failure(exc)
            raise StoreError(f"the database cannot be read: {problem}") from None

    async def read(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``query(connection, ...)`` on a thread, off the event loop; a read not
        answered within :data:`READ_WAIT` seconds is given up (SQLite on a hung disk: no
        deadline can break its call, which keeps its thread)."""
        loop = asyncio.get_running_loop()
        reading = loop.run_in_executor(None, partial(self.read_now, query, *args, **kwargs))
        try:
            return await asyncio.wait_for(reading, READ_WAIT)
        except TimeoutError:
            raise StoreError(
                f"the database cannot be read: it did not answer within {READ_WAIT:g} s (a "
                "hung disk or database server?)"
            ) from None

    async def write(self, operation: BatchOperation[Payload, Result], payload: Payload) -> Result:
        """Apply one payload in the next group commit; returns once it is committed."""
        return await self.writer.submit(operation, payload)
