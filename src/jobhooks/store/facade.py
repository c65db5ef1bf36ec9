"""The store as one object: reads through a connection pool, writes through group commit.

Each consumer holds the part it needs: the check-in its :meth:`Store.check_in`,
workers the queue, operators :attr:`Store.reads`, the token cache
:attr:`Store.tokens`, the dashboard :attr:`Store.sessions`, pull mode
:attr:`Store.pull` (see :mod:`jobhooks.store.ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from jobhooks.errors import DatabaseLost, StoreError
from jobhooks.store.access import Database
from jobhooks.store.checkins import CheckinWrites
from jobhooks.store.checkpoint import WalCheckpointer
from jobhooks.store.clock import DatabaseClock
from jobhooks.store.database import FileIdentity, open_database
from jobhooks.store.deadline import watch
from jobhooks.store.dialect import RUNS_CHANNEL, notify
from jobhooks.store.digests import shorten_digests
from jobhooks.store.engine import is_sqlite, sqlite_path
from jobhooks.store.failures import describe_failure
from jobhooks.store.ids import stored_id
from jobhooks.store.keys import signing_keys
from jobhooks.store.nodes import (
    HEARTBEAT_EVERY,
    NodeIdentity,
    Sightings,
    beat,
    dead_nodes,
    stop_node,
)
from jobhooks.store.ports import LocalWorker
from jobhooks.store.pull import PullStore
from jobhooks.store.queue import (
    ClaimRequest,
    claim_runs,
    finish_runs,
    give_back_runs,
    hold_runs,
    leased_to,
    release_held,
    replay_dead,
    replay_run,
)
from jobhooks.store.reads import ReadModel
from jobhooks.store.records import CheckinReceipt, ClaimedRun, NewCompletion, RunOutcome, RunStatus
from jobhooks.store.retention import purge_older_than
from jobhooks.store.sessions import SessionStore
from jobhooks.store.tables import runs
from jobhooks.store.tokens import TokenStore
from jobhooks.store.writer import BatchOperation, GroupCommitWriter, StoreHealth

__all__ = ["WRITES_STALL", "Store"]

R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("jobhooks.store")

WRITES_STALL = 5 * HEARTBEAT_EVERY
"""Seconds without a commit (heartbeats commit every few seconds) before /readyz fails."""


class Store:
    """Completions, runs, tokens, sessions and pull mode's state in one database.

    Every write goes through one :class:`GroupCommitWriter`; reads use the
    engine's pool from worker threads so they never block the event loop.
    ``clock`` (seconds since the epoch) dates every write and read, so tests
    can move time instead of waiting; ``elapsed`` (a clock the wall clock's steps do
    not move) times how long other processes have been silent.
    """

    def __init__(
        self,
        url: str,
        *,
        default_lease: float = 60.0,
        migrate: bool | None = None,
        clock: Callable[[], float] | None = None,
        elapsed: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.default_lease = default_lease
        if clock is None:
            clock = time.time if is_sqlite(url) else DatabaseClock()
        self._clock = clock
        self._engine = open_database(url, migrate=migrate)
        if isinstance(clock, DatabaseClock):
            self._measure_clock(clock)
        self._path = sqlite_path(url) if is_sqlite(url) else None
        self._files: dict[Path, FileIdentity | None] = {}
        if self._path is not None:
            self._files[self._path] = FileIdentity.of(self._path)
        self._checkpointer = WalCheckpointer(self._engine) if is_sqlite(url) else None
        self._writer = GroupCommitWriter(
            self._engine,
            verify=self._verify_file if self._path is not None else None,
            before=self._checkpointer.make_room if self._checkpointer is not None else None,
            clock=clock,
        )
        if self._checkpointer is not None:
            self._writer.every(1.0, self._checkpointer.catch_up)
        self._node: NodeIdentity | None = None
        self._found_gone: dict[str, float] = {}
        """The processes last found gone, each with the heartbeat it was found with."""
        self._sightings = Sightings(elapsed)
        """What this process saw of the others' heartbeats, and of its own."""
        database = Database(self._engine, self._writer)
        self._db = database
        self._checkins = CheckinWrites()
        self.reads = ReadModel(database, clock)
        """What operators read."""
        self.tokens = TokenStore(database)
        self.sessions = SessionStore(database, clock)
        self.pull = PullStore(database, self._checkins)
        """Pull mode's lease, position and pages."""
        self._claim: BatchOperation[ClaimRequest, list[ClaimedRun]] = BatchOperation(
            "claim", claim_runs
        )
        self._finish: BatchOperation[Sequence[RunOutcome], None] = BatchOperation(
            "finish", _finish_all, repeatable=True
        )
        self._give_back: BatchOperation[tuple[str, Sequence[str]], int] = BatchOperation(
            "give_back", _waking(give_back_runs)
        )
        self._hold: BatchOperation[tuple[str, Sequence[str]], int] = BatchOperation(
            "hold", hold_runs, repeatable=True
        )
        self._replay: BatchOperation[str, str | None] = BatchOperation(
            "replay", _waking(replay_run)
        )
        self._replay_dead: BatchOperation[str, int] = BatchOperation(
            "replay_dead", _waking(replay_dead)
        )
        self._release: BatchOperation[tuple[str, int], int] = BatchOperation(
            "release_held", _waking(release_held)
        )
        self._shorten: BatchOperation[tuple[str, float], int] = BatchOperation(
            "shorten_digests", _waking(shorten_digests)
        )
        self._notify: BatchOperation[tuple[str, str], None] = BatchOperation(
            "notify", _notify, repeatable=True
        )
        self._purge: BatchOperation[tuple[float, int], int] = BatchOperation(
            "purge", purge_older_than, repeatable=True
        )
        self._beat: BatchOperation[tuple[NodeIdentity, float], float] = BatchOperation(
            "beat", _register_nodes, repeatable=True
        )
        self._keys: BatchOperation[str, bytes] = BatchOperation(
            "signing_key", signing_keys, repeatable=True
        )
        self._writer.start()
        if self._checkpointer is not None:
            self._checkpointer.start()

    def close(self) -> None:
        """Finish queued writes and close every connection (and say this process stopped)."""
        node, self._node = self._node, None
        self._writer.stop()
        if node is not None and self._writer.lost is None:
            with contextlib.suppress(Exception), watch(), self._engine.begin() as connection:
                stop_node(connection, node.id, self._clock())
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._engine.dispose()

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (its counters show how well writes are grouped)."""
        return self._writer

    # -- health and liveness ---------------------------------------------------

    def _verify_file(self) -> None:
        """Raise DatabaseLost when the SQLite file (or its log, or its shared memory) is not
        the one opened. A ``-shm`` deleted under the node is as bad as a log deleted: the
        next process to open the database makes a new one, and each writes the log as if
        it were alone, which damages the database."""
        assert self._path is not None
        sides = [self._path.with_name(self._path.name + end) for end in ("-wal", "-shm")]
        for path in (self._path, *sides):
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

    def unready(self) -> str | None:
        """Why this process cannot store a completion now (``/readyz``), or None when it can:
        the database file was lost, a write failed recently (see
        :func:`~jobhooks.store.writer.next_recovery`), or (with a heartbeat running)
        nothing has committed for a while."""
        now = self._clock()
        health = self._writer.health
        if self._writer.stuck is not None:
            return self._writer.stuck
        if not health.ok:
            return health.problem or "the database refused the last write"
        failed = health.last_failure
        if failed is not None and now - failed < health.recovery:
            # A small write (a heartbeat) may pass while check-ins still fail for room.
            return (
                f"{health.last_problem} ({now - failed:.0f} s ago; ready again after "
                f"{health.recovery:.0f} s without a failed write)"
            )
        last = health.last_commit
        if self._node is not None and last is not None and now - last > WRITES_STALL:
            return f"no write has committed for {now - last:.0f} s (the database is not answering)"
        return None

    def _measure_clock(self, clock: DatabaseClock) -> None:
        try:
            with self._engine.connect() as connection:
                offset = clock.measure(connection)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(f"the database cannot be read: {describe_failure(exc)}") from None
        if abs(offset) >= 1.0:
            logger.warning(
                "this machine's clock is %.1f s %s the database server's; jobhooks uses the "
                "server's time (keep the clocks in sync with NTP)",
                abs(offset),
                "behind" if offset > 0 else "ahead of",
            )

    async def start_heartbeat(self, node: NodeIdentity, alive: Callable[[], bool]) -> None:
        """Register this process, then renew its heartbeat every few seconds from the
        writer's thread while ``alive()`` holds (the process still makes progress).

        Each heartbeat also checks that the database still holds the last one: a
        database that went back in time was replaced by an older copy, and nothing
        written to it can be trusted (every write is refused from then on).
        """
        self._node = node
        started = self._clock()
        written = [await self._db.write(self._beat, (node, started))]
        self._sightings.beaten()
        clock = self._clock

        def renew(connection: Connection) -> float:
            if isinstance(clock, DatabaseClock):
                clock.measure(connection)
            return beat(connection, node, started, clock(), expected=written[0])

        def heartbeat() -> None:
            if self._node is not None and alive():
                try:
                    written[0] = self._writer.transaction(renew)
                except Exception:
                    self._sightings.failed()
                    raise
                self._sightings.beaten()

        self._writer.every(HEARTBEAT_EVERY, heartbeat)

    async def dead_nodes(self) -> list[str]:
        """The processes that are gone (their runs and leases may be taken back)."""
        node = self._node
        if node is None:
            return []
        found = await self._db.read(dead_nodes, node, self._clock(), sightings=self._sightings)
        self._found_gone = found
        return list(found)

    # -- check-in ------------------------------------------------------------

    def set_local_worker(self, worker: LocalWorker | None) -> None:
        """Let check-ins hand runs straight to this process's worker."""
        self._checkins.set_local_worker(worker)

    async def check_in(self, completion: NewCompletion) -> CheckinReceipt:
        """Store one report with its runs; returns once committed."""
        return await self._db.write(self._checkins.operation, completion)

    # -- queue ---------------------------------------------------------------

    async def claim(
        self,
        worker: str,
        limit: int,
        leases: dict[str, float],
        dead: Sequence[str] = (),
    ) -> list[ClaimedRun]:
        """Lease up to ``limit`` due runs to ``worker``, first those held by the ``dead``
        processes."""
        # Each with the heartbeat it was found with: a claim takes nothing from a process
        # that beat since (it was paused, not gone).
        found = {node: self._found_gone.get(node, math.inf) for node in dead}
        request = ClaimRequest(worker, limit, leases, self.default_lease, found)
        return await self._db.write(self._claim, request)

    async def finish(self, outcomes: Sequence[RunOutcome]) -> None:
        """Record the end of attempts, in one write."""
        await self._db.write(self._finish, outcomes)

    async def give_back(self, worker: str, run_ids: Sequence[str]) -> int:
        """Make runs ``worker`` took but never started wait again, as if never taken;
        returns how many it still held."""
        return await self._db.write(self._give_back, (worker, run_ids))

    async def hold(self, worker: str, run_ids: Sequence[str]) -> int:
        """Hold runs ``worker`` took but cannot start (see :func:`hold_runs`)."""
        return await self._db.write(self._hold, (worker, run_ids))

    async def leased_to(self, worker: str, *, ended: bool = False) -> list[str]:
        """The open runs leased to ``worker`` (with ``ended``, those whose lease has ended)."""
        return await self._db.read(leased_to, worker, self._clock(), ended)

    def next_due(self) -> float | None:
        """When the earliest waiting run is due (pending, retrying or leased)."""
        return self._db.read_now(_next_due)

    async def replay(self, run_id: str) -> str | None:
        """Make a finished run due again; returns its status before, None if unknown."""
        return await self._db.write(self._replay, stored_id(run_id))

    async def replay_dead(self, handler: str) -> int:
        """Make every dead run of a handler due again; returns how many."""
        return await self._db.write(self._replay_dead, handler)

    async def release_held(self, registrations: Sequence[tuple[str, int]]) -> int:
        """Make the held runs of each (handler, max_attempts) due now; returns how many."""
        writes = [self._db.write(self._release, item) for item in registrations]
        return sum(await asyncio.gather(*writes))

    async def shorten_digests(self, waits: Sequence[tuple[str, float]]) -> int:
        """Make the digests collecting for each (handler, group_wait) close at most that
        long after they opened; returns how many closed sooner."""
        writes = [self._db.write(self._shorten, item) for item in waits]
        return sum(await asyncio.gather(*writes))

    # -- the rest ------------------------------------------------------------

    async def announce(self, channel: str, payload: str = "") -> None:
        """Tell every node listening on ``channel`` (PostgreSQL only; a no-op on SQLite)."""
        await self._db.write(self._notify, (channel, payload))

    async def purge(self, cutoff: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished completions received before ``cutoff``."""
        return await self._db.write(self._purge, (cutoff, limit))

    async def signing_key(self, name: str) -> bytes:
        """The random key called ``name``, made on first use and shared by every node."""
        return await self._db.write(self._keys, name)


def _waking(
    apply: Callable[[Connection, Sequence[T], float], list[R]],
) -> Callable[[Connection, Sequence[T], float], list[R]]:
    """``apply``, then a wake-up for the workers of every node."""

    def apply_and_wake(connection: Connection, payloads: Sequence[T], now: float) -> list[R]:
        results = apply(connection, payloads, now)
        notify(connection, RUNS_CHANNEL)
        return results

    return apply_and_wake


def _finish_all(
    connection: Connection, groups: Sequence[Sequence[RunOutcome]], now: float
) -> list[None]:
    finish_runs(connection, [outcome for group in groups for outcome in group], now)
    return [None] * len(groups)


def _notify(connection: Connection, items: Sequence[tuple[str, str]], now: float) -> list[None]:
    for channel, payload in items:
        notify(connection, channel, payload)
    return [None] * len(items)


def _next_due(connection: Connection) -> float | None:
    query = select(func.min(runs.c.due_at)).where(runs.c.status.in_(RunStatus.UNFINISHED))
    value = connection.execute(query).scalar()
    return float(value) if value is not None else None


def _register_nodes(
    connection: Connection, items: Sequence[tuple[NodeIdentity, float]], now: float
) -> list[float]:
    return [beat(connection, node, started, now) for node, started in items]
