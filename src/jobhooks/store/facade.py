"""The store as one object: reads through a connection pool, writes through group commit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select

from jobhooks.errors import DatabaseLost
from jobhooks.store import queries
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.checkpoint import WalCheckpointer
from jobhooks.store.database import FileIdentity, open_database
from jobhooks.store.engine import is_sqlite, sqlite_path
from jobhooks.store.nodes import HEARTBEAT_EVERY, NodeIdentity, beat, dead_nodes, stop_node
from jobhooks.store.ports import CheckInWithin, LocalWorker
from jobhooks.store.records import CheckinReceipt, ClaimedRun, NewCompletion, RunOutcome, RunStatus
from jobhooks.store.retention import purge_older_than
from jobhooks.store.runs import (
    ClaimRequest,
    claim_runs,
    finish_runs,
    replay_dead,
    replay_run,
)
from jobhooks.store.sessions import end_session, session_active, start_sessions
from jobhooks.store.tables import runs
from jobhooks.store.writer import BatchOperation, GroupCommitWriter, StoreHealth

__all__ = ["RELOAD_CHANNEL", "RUNS_CHANNEL", "Store", "notify"]

RUNS_CHANNEL = "jobhooks_runs"
RECOVERY = 5 * HEARTBEAT_EVERY
"""Seconds without a failed write before /readyz says ready again after a failure."""
WRITES_STALL = 5 * HEARTBEAT_EVERY
"""Seconds without a commit (heartbeats commit every few seconds) before /readyz fails."""
RELOAD_CHANNEL = "jobhooks_reload"
T = TypeVar("T")


def notify(connection: Connection, channel: str, payload: str = "") -> None:
    """Queue a PostgreSQL notification, sent when the transaction commits."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_notify(%(channel)s, %(payload)s)", {"channel": channel, "payload": payload}
        )


def _notify_all(connection: Connection, items: Sequence[tuple[str, str]], now: float) -> list[None]:
    for channel, payload in items:
        notify(connection, channel, payload)
    return [None] * len(items)


def _notifying(apply: Any) -> Any:
    def apply_and_notify(connection: Connection, payloads: Sequence[Any], now: float) -> Any:
        results = apply(connection, payloads, now)
        notify(connection, RUNS_CHANNEL)
        return results

    return apply_and_notify


class Store:
    """Completions, runs and tokens in one database.

    Every write goes through one :class:`GroupCommitWriter`; reads use the
    engine's pool from worker threads so they never block the event loop.
    """

    def __init__(self, url: str, *, default_lease: float = 60.0, migrate: bool | None = None):
        self.url = url
        self.engine: Engine = open_database(url, migrate=migrate)
        self._path = sqlite_path(url) if is_sqlite(url) else None
        self._files: dict[Path, FileIdentity | None] = {}
        if self._path is not None:
            self._files[self._path] = FileIdentity.of(self._path)
        self.default_lease = default_lease
        self._local: LocalWorker | None = None
        self._reserved = 0
        """Slots the local worker granted to the open transaction (writer thread only)."""
        self._known_job_types: set[str] = set()
        self._checkpointer = WalCheckpointer(self.engine) if is_sqlite(url) else None
        self._writer = GroupCommitWriter(
            self.engine, verify=self._verify_file if self._path is not None else None
        )
        if self._checkpointer is not None:
            self._writer.every(1.0, self._checkpointer.catch_up)
        self._node: NodeIdentity | None = None
        self._checkin = BatchOperation(
            "checkin", self._apply_checkins, self._after_checkins, self._give_back_slots
        )
        self._claim = BatchOperation("claim", claim_runs)
        self._finish = BatchOperation("finish", finish_runs)
        self._replay = BatchOperation("replay", _notifying(replay_run))
        self._replay_dead = BatchOperation("replay_dead", _notifying(replay_dead))
        self._notify = BatchOperation("notify", _notify_all)
        self._purge = BatchOperation("purge", purge_older_than)
        self._beat = BatchOperation("beat", _register_nodes)
        self._start_session = BatchOperation("start_session", start_sessions)
        self._end_session = BatchOperation("end_session", end_session)
        self._transact = BatchOperation(
            "transact", self._apply_transact, self._after_transact, self._rollback_transact
        )
        self._transact_receipts: list[CheckinReceipt] = []
        """Check-ins stored by the open transaction's ``transact`` work (writer thread only)."""
        self._writer.start()
        if self._checkpointer is not None:
            self._checkpointer.start()

    def close(self) -> None:
        """Finish queued writes and close every connection (and say this process stopped)."""
        node, self._node = self._node, None
        self._writer.stop()
        if node is not None and self._writer.lost is None:
            with contextlib.suppress(Exception), self.engine.begin() as connection:
                stop_node(connection, node.id, time.time())
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()

    # -- health and liveness ---------------------------------------------------

    def _verify_file(self) -> None:
        """Raise DatabaseLost when the SQLite file (or its log) is not the one opened."""
        assert self._path is not None
        wal = self._path.with_name(self._path.name + "-wal")
        for path in (self._path, wal):
            now = FileIdentity.of(path)
            if path not in self._files:
                self._files[path] = now
            elif now != self._files[path]:
                what = "deleted" if now is None else "replaced"
                raise DatabaseLost(
                    f"the database file {path} was {what} while jobhooks was running: nothing "
                    "written since can be kept, so every write is refused; restart jobhooks "
                    "(it opens the file now at that path, or creates a new database)"
                )

    @property
    def health(self) -> StoreHealth:
        """Whether the last write committed."""
        return self._writer.health

    def unready(self, now: float) -> str | None:
        """Why this process cannot store a completion now (``/readyz``), or None when it can:
        the database file was lost, a write failed within the last :data:`RECOVERY`
        seconds, or (with a heartbeat running) nothing has committed for a while."""
        health = self._writer.health
        if not health.ok:
            return health.problem or "the database refused the last write"
        failed = health.last_failure
        if failed is not None and now - failed < RECOVERY:
            # A small write (a heartbeat) may pass while check-ins still fail for room.
            return (
                f"{health.last_problem} ({now - failed:.0f} s ago; ready again after "
                f"{RECOVERY:.0f} s without a failed write)"
            )
        last = health.last_commit
        if self._node is not None and last is not None and now - last > WRITES_STALL:
            return f"no write has committed for {now - last:.0f} s (the database is not answering)"
        return None

    async def start_heartbeat(self, node: NodeIdentity, alive: Callable[[], bool]) -> None:
        """Register this process, then renew its heartbeat every few seconds from the
        writer's thread while ``alive()`` holds (the process still makes progress)."""
        self._node = node
        started = time.time()
        await self._writer.submit(self._beat, (node, started))

        def heartbeat() -> None:
            if self._node is not None and alive():
                self._writer.transaction(lambda c: beat(c, node, started, time.time()))

        self._writer.every(HEARTBEAT_EVERY, heartbeat)

    async def dead_nodes(self) -> list[str]:
        """The processes that are gone (their runs and leases may be taken back)."""
        node = self._node
        if node is None:
            return []
        found: list[str] = await self.read(_dead_nodes, node)
        return found

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (its counters show how well writes are grouped)."""
        return self._writer

    # -- check-in ------------------------------------------------------------

    def set_local_worker(self, worker: LocalWorker | None) -> None:
        """Let check-ins hand runs straight to this process's worker."""
        self._local = worker

    def _reserve(self, count: int) -> tuple[str, int]:
        assert self._local is not None
        worker, granted = self._local.reserve(count)
        self._reserved += granted if count >= 0 else count
        return worker, granted

    def _give_back_slots(self) -> None:
        # The transaction that handed runs to the local worker failed (on PostgreSQL,
        # typically another node stored the same report first): nothing will run them.
        if self._reserved and self._local is not None:
            self._local.reserve(-self._reserved)
        self._reserved = 0

    def _apply_checkins(
        self, connection: Connection, items: Sequence[NewCompletion], now: float
    ) -> list[CheckinReceipt]:
        receipts = insert_checkins(
            connection,
            items,
            now,
            reserve=self._reserve if self._local is not None else None,
            known_job_types=self._known_job_types,
        )
        waiting = sum(len(r.runs) - len(r.handed_off) for r in receipts if not r.duplicate)
        if waiting:
            notify(connection, RUNS_CHANNEL)
        return receipts

    def _after_checkins(self, receipts: Sequence[CheckinReceipt]) -> None:
        self._reserved = 0
        local = self._local
        handed = [run for receipt in receipts for run in receipt.handed_off]
        if handed and local is not None:
            local.deliver(handed)

    async def check_in(self, completion: NewCompletion) -> CheckinReceipt:
        """Store one report with its runs; returns once committed."""
        receipt: CheckinReceipt = await self._writer.submit(self._checkin, completion)
        return receipt

    async def transact(self, work: Callable[[Connection, float, CheckInWithin], T]) -> T:
        """Run ``work(connection, now, check_in)`` in one committed write transaction.

        ``check_in(reports)`` stores reports exactly as :meth:`check_in` does
        (dedupe, retry counts, matching runs, hand-off to the local worker), in
        the same transaction as whatever else ``work`` writes, so both commit or
        neither does. ``work`` may run twice (once grouped with other writes,
        then alone if the group failed): it must act on the database's state only.
        """
        result: T = await self._writer.submit(self._transact, work)
        return result

    def _apply_transact(
        self, connection: Connection, works: Sequence[Any], now: float
    ) -> list[Any]:
        def check_in(items: Sequence[NewCompletion]) -> list[CheckinReceipt]:
            receipts = self._apply_checkins(connection, items, now)
            self._transact_receipts.extend(receipts)
            return receipts

        return [work(connection, now, check_in) for work in works]

    def _after_transact(self, _results: Sequence[Any]) -> None:
        receipts, self._transact_receipts = self._transact_receipts, []
        self._after_checkins(receipts)

    def _rollback_transact(self) -> None:
        self._transact_receipts = []
        self._give_back_slots()

    # -- workers ---------------------------------------------------------------

    async def claim(
        self,
        worker: str,
        limit: int,
        leases: dict[str, float],
        dead: Sequence[str] = (),
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` due runs to ``worker``, first those held by the ``dead``
        processes."""
        request = ClaimRequest(worker, limit, leases, self.default_lease, tuple(dead))
        claimed: list[ClaimedRun] = await self._writer.submit(self._claim, request)
        return claimed

    async def finish(self, outcome: RunOutcome) -> None:
        """Record the end of an attempt."""
        await self._writer.submit(self._finish, outcome)

    def next_due(self) -> float | None:
        """When the earliest waiting run is due (pending, retrying or leased)."""
        query = select(func.min(runs.c.due_at)).where(runs.c.status.in_(RunStatus.OPEN))
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
        return float(value) if value is not None else None

    # -- operators ---------------------------------------------------------------

    async def replay(self, run_id: str) -> str | None:
        """Make a finished run due again; returns its status before, None if unknown."""
        previous: str | None = await self._writer.submit(self._replay, run_id)
        return previous

    async def replay_dead(self, handler: str) -> int:
        """Make every dead run of a handler due again; returns how many."""
        count: int = await self._writer.submit(self._replay_dead, handler)
        return count

    async def start_session(self, session_id: str, token_id: str, expires_at: float) -> None:
        """Record a dashboard sign-in."""
        await self._writer.submit(self._start_session, (session_id, token_id, expires_at))

    async def end_session(self, session_id: str) -> None:
        """End a dashboard session (sign-out): its cookie stops working everywhere."""
        await self._writer.submit(self._end_session, session_id)

    async def session_active(self, session_id: str, token_id: str) -> bool:
        """True while a dashboard session has neither ended nor expired."""
        active: bool = await self.read(session_active, session_id, token_id, time.time())
        return active

    async def announce(self, channel: str, payload: str = "") -> None:
        """Tell every node listening on ``channel`` (PostgreSQL only; a no-op on SQLite)."""
        await self._writer.submit(self._notify, (channel, payload))

    async def purge(self, cutoff: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished completions received before ``cutoff``."""
        count: int = await self._writer.submit(self._purge, (cutoff, limit))
        return count

    async def read(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a read query from :mod:`jobhooks.store.queries` off the event loop."""
        if self._writer.lost is not None:
            raise self._writer.lost
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(function, self.engine, *args, **kwargs))

    def backlog(self) -> tuple[int, float]:
        """Waiting runs and the age of the oldest, now."""
        return queries.backlog(self.engine, time.time())


def _dead_nodes(engine: Engine, node: NodeIdentity) -> list[str]:
    with engine.connect() as connection:
        return dead_nodes(connection, node, time.time())


def _register_nodes(
    connection: Connection, items: Sequence[tuple[NodeIdentity, float]], now: float
) -> list[None]:
    for node, started in items:
        beat(connection, node, started, now)
    return [None] * len(items)
