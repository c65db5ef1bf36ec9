"""Group commit: one thread writes every change, many callers share each transaction.

Callers on the event loop submit operations and await their results. The
writer thread takes everything queued, applies it in one transaction and
commits once, so a burst of check-ins costs one fsync rather than one each.
Nothing is acknowledged before its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from jobhooks.errors import StoreError

__all__ = ["BatchOperation", "GroupCommitWriter"]

logger = logging.getLogger("jobhooks.store")

BatchFunction = Callable[[Connection, Sequence[Any], float], Sequence[Any]]
"""Applies many payloads of one kind in the open transaction; one result per payload."""


@dataclass(frozen=True, slots=True)
class BatchOperation:
    """A kind of write that can be applied to many payloads at once."""

    name: str
    apply: BatchFunction
    after_commit: Callable[[Sequence[Any]], None] | None = None
    """Called on the writer thread after the commit with the results."""
    after_rollback: Callable[[], None] | None = None
    """Called on the writer thread when a transaction that included this kind failed."""


_STOP = object()


class GroupCommitWriter:
    """Serialises writes through one connection and commits them in groups."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 1024,
        maintenance: Callable[[], None] | None = None,
        maintenance_interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._maintenance = maintenance
        self._maintenance_interval = maintenance_interval
        self._maintained = time.monotonic()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jobhooks-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, operation: BatchOperation, payload: Any) -> asyncio.Future[Any]:
        """Queue one payload; the future resolves after its transaction commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((operation, payload, future, loop))
        return future

    async def call(self, operation: BatchOperation, payload: Any) -> Any:
        """Submit and wait for the committed result."""
        return await self.submit(operation, payload)

    def _maintain(self) -> None:
        if self._maintenance is not None:
            now = time.monotonic()
            if now - self._maintained >= self._maintenance_interval:
                self._maintained = now
                try:
                    self._maintenance()
                except Exception:
                    logger.exception("store maintenance failed; trying again later")

    def _run(self) -> None:
        while True:
            self._maintain()
            try:
                first = self._queue.get(timeout=self._maintenance_interval)
            except queue.Empty:
                continue
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[Any]) -> None:
        try:
            results = self._apply(batch)
        except IntegrityError as exc:
            # On PostgreSQL another node may have committed the same report a moment
            # earlier; applied alone, each write sees it (a real conflict fails again).
            first_line = str(exc.orig or exc).splitlines()[0]
            logger.info(
                "a group of %d writes hit a constraint (%s); retrying them one by one",
                len(batch),
                first_line,
            )
        except Exception:
            logger.exception("a group of %d writes failed; retrying them one by one", len(batch))
        else:
            self._deliver(batch, results)
            return
        for item in batch:
            try:
                self._deliver([item], self._apply([item]))
            except Exception as exc:
                self._fail(item, exc)

    def _apply(self, batch: list[Any]) -> list[Any]:
        groups: dict[str, tuple[BatchOperation, list[int]]] = {}
        for index, (operation, _payload, _future, _loop) in enumerate(batch):
            groups.setdefault(operation.name, (operation, []))[1].append(index)
        results: list[Any] = [None] * len(batch)
        now = time.time()
        try:
            with self._engine.begin() as connection:
                for operation, indexes in groups.values():
                    payloads = [batch[i][1] for i in indexes]
                    applied = operation.apply(connection, payloads, now)
                    for index, result in zip(indexes, applied, strict=True):
                        results[index] = result
        except Exception:
            for operation, _indexes in groups.values():
                if operation.after_rollback is not None:
                    operation.after_rollback()
            raise
        for operation, indexes in groups.values():
            if operation.after_commit is not None:
                operation.after_commit([results[i] for i in indexes])
        self.batches += 1
        self.items += len(batch)
        return results

    @staticmethod
    def _deliver(batch: list[Any], results: list[Any]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for (_operation, _payload, future, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, pairs in by_loop.items():
            # A closed loop means nobody is waiting for these results any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, pairs)

    @staticmethod
    def _fail(item: Any, exc: Exception) -> None:
        _operation, _payload, future, loop = item
        error = StoreError(f"the database refused a write: {type(exc).__name__}: {exc}")
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_reject, future, error)


def _resolve(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in pairs:
        if not future.done():
            future.set_result(result)


def _reject(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
