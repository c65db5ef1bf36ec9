"""A store's database seen from the tests: apply batch operations, read rows back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select

from jobhooks.store.tables import attempts, completions, runs

T = TypeVar("T")


class StoreDb:
    """An engine on a fresh database, with one transaction per call as the writer does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(
        self,
        operation: Callable[[Connection, Sequence[Any], float], T],
        payloads: Sequence[Any],
        now: float,
    ) -> T:
        """Apply a batch operation (as the group-commit writer does) in one transaction."""
        with self.engine.begin() as connection:
            return operation(connection, payloads, now)

    def read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a read query (``query(connection, ...)``) on a connection of its own."""
        with self.engine.connect() as connection:
            return query(connection, *args, **kwargs)

    def count(self, table: Any, *where: Any) -> int:
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(table)
            for condition in where:
                query = query.where(condition)
            return int(connection.execute(query).scalar_one())

    def run(self, run_id: str) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(select(runs).where(runs.c.id == run_id)).one()

    def attempts(self, run_id: str) -> list[Any]:
        with self.engine.connect() as connection:
            query = select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.number)
            return list(connection.execute(query))

    def completion(self, completion_id: str) -> Any:
        with self.engine.connect() as connection:
            query = select(completions).where(completions.c.id == completion_id)
            return connection.execute(query).one()
