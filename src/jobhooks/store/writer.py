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
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from jobhooks.errors import CommitUnconfirmed, DatabaseLost, DatabaseUnreachable, StoreError
from jobhooks.store.deadline import DEADLINE, overdue, watch
from jobhooks.store.dialect import limit_lock_wait
from jobhooks.store.failures import describe_failure, is_damaged, refused_before_writing
from jobhooks.store.fate import (
    Session,
    end_session,
    session_of,
    session_state,
    transaction_fate,
    transaction_id,
)

__all__ = [
    "AGAIN_LOCK_WAIT",
    "FATE_WAIT",
    "GIVE_UP_AFTER",
    "KEEP_CONNECTION",
    "RECOVERY",
    "STUCK_AFTER",
    "BatchOperation",
    "GroupCommitWriter",
    "StoreHealth",
    "next_recovery",
]

logger = logging.getLogger("jobhooks.store")

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BatchOperation(Generic[P, R]):
    """A kind of write that can be applied to many payloads at once: ``apply`` takes the
    open transaction, the payloads and the time, and returns one result per payload."""

    name: str
    apply: Callable[[Connection, Sequence[P], float], Sequence[R]]
    after_commit: Callable[[Sequence[R]], None] | None = None
    """Called on the writer thread after the commit with the results."""
    after_rollback: Callable[[], None] | None = None
    """Called on the writer thread when a transaction that included this kind failed."""
    again: Callable[[Connection, Sequence[P], float], Sequence[R]] | None = None
    """Applies payloads whose group failed, each on its own (``apply`` when None). When the
    connection is lost at COMMIT and the database cannot say whether the group was
    committed (SQLite, or PostgreSQL out of reach), it may have been: a kind of write that
    must not be applied twice reads back what it finds stored. Payloads with ``again``
    are retried before the others, so they read back what the failed group left, not
    what a retried write (a claim) changed since."""
    repeatable: bool = False
    """Applied again after a COMMIT that went unanswered, it does no harm (an outcome
    recorded twice, a heartbeat). A group whose every kind of write is repeatable or has
    ``again`` is applied again; any other group, on PostgreSQL, notes its transaction's
    id so that the database can be asked what became of it (one more round trip)."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the last write committed: what ``/readyz`` reports."""

    ok: bool
    problem: str | None = None
    """What went wrong, in plain words (None while writes commit)."""
    since: float | None = None
    """When writes started failing."""
    last_commit: float | None = None
    last_failure: float | None = None
    """When a write last failed, even if writes commit again since."""
    last_problem: str | None = None
    """What went wrong then."""
    recovery: float = 0.0
    """Seconds without a failed write before ``/readyz`` says ready again (see
    :func:`next_recovery`)."""


RECOVERY = 10.0
"""Seconds without a failed write before ``/readyz`` says ready again after a failure."""
MAX_RECOVERY = 320.0


def _unconfirmed(exc: Exception) -> Exception:
    """``exc``, for a write that may have been stored all the same."""
    if isinstance(exc, CommitUnconfirmed | DatabaseLost):
        return exc
    return CommitUnconfirmed(
        f"the database did not confirm the write ({describe_failure(exc)}); it may have been stored"
    )


def _about_one_write(exc: Exception) -> bool:
    """Whether a write applied alone failed for what it holds (a constraint, a value, a
    deadlock with another session, a bug), so that the writes after it may well succeed;
    not for the database as a whole (the driver's other ``OperationalError``: a lock not
    granted in time, a full disk, a lost connection; or jobhooks' own store errors:
    unreachable, no answer in time)."""
    if isinstance(exc, StoreError | InterfaceError):
        return False
    if isinstance(exc, OperationalError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate.startswith("40")  # serialization failure, deadlock: this one's
    return True


def next_recovery(health: StoreHealth, now: float) -> float:
    """The wait after a failure at ``now``. Small writes (heartbeats) may pass while
    check-ins fail (a full disk has room for a page, not a report), so a node that
    fails again soon after it said ready waits twice as long each time, up to
    :data:`MAX_RECOVERY`, instead of flapping in and out of a load balancer."""
    last = health.last_failure
    if last is None or now - last > health.recovery + MAX_RECOVERY:
        return RECOVERY
    if now - last < health.recovery:
        return health.recovery  # the same episode
    return min(health.recovery * 2, MAX_RECOVERY)


@dataclass(frozen=True, slots=True)
class Periodic:
    """Work the writer thread does every ``interval`` seconds, between transactions."""

    interval: float
    work: Callable[[], None]


_STOP = object()

KEEP_CONNECTION = 1.0
"""Seconds the writer keeps its connection unused before it gives it back to the pool."""
FATE_WAIT = 3.0
"""Seconds to let a COMMIT that went unanswered, still under way on the server (a slow
disk, a synchronous standby), end on its own before its session is ended. The writer
waits meanwhile: well below the 10 s after which other nodes take a silent node's runs."""
FATE_GRACE = 1.0
"""Seconds more for an ended session to go, or for the server to answer at all."""
FATE_POLL = 0.05
"""Seconds between two looks."""
AGAIN_LOCK_WAIT = 5.0
"""Seconds a write applied again after its group failed waits for a lock (PostgreSQL):
the failed group's session may still hold its rows, committing or about to be ended."""
STUCK_AFTER = DEADLINE
"""Seconds a transaction (or the writer's periodic work) may stay under way before the
writes queued behind it are refused, and new ones at once, until it ends: a disk that
hangs (a frozen or failing volume) holds SQLite's calls for ever, where nothing can break
them, and a check-in must not wait past what an orchestrator waits for an answer."""
GIVE_UP_AFTER = 2 * DEADLINE
"""Seconds after which the writes of a transaction still under way are answered: they
may be stored when it ends (PostgreSQL's own deadline has ended such a transaction well
before)."""


class GroupCommitWriter:
    """Serialises writes through one connection and commits them in groups.

    ``verify`` runs after each commit, before anyone is told: when it raises
    :class:`DatabaseLost` (the database file is not the one that was opened),
    the group fails and so does every write after it. ``before`` runs on the writer
    thread before each transaction: what it raises fails that transaction's writes
    (counted in :attr:`health`) with nothing written (SQLite's checkpoint, while the
    disk has no room for the log's pages: each write would take more of the room it
    needs, and the log could never start over).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 1024,
        verify: Callable[[], None] | None = None,
        before: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._verify = verify
        self._before = before
        self._clock = clock
        self._periodic: list[tuple[Periodic, list[float]]] = []
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = None
        """The writer thread's connection, kept from one transaction to the next."""
        self._used = 0.0
        self._lost: DatabaseLost | None = None
        self._health = StoreHealth(True)
        self._at_commit = False
        """The last transaction failed at its COMMIT (or after): it may have been stored."""
        self._reached = False
        """The last transaction had a connection (False: the database could not be reached)."""
        self._busy: tuple[float, list[Any]] | None = None
        """When the transaction (or periodic work) under way began (:func:`time.monotonic`),
        and the writes it carries."""
        self._stuck: str | None = None
        """Why writes are refused at once: the transaction under way is stuck."""
        self._stuck_lock = threading.Lock()
        self._stopping = threading.Event()
        self.batches = 0
        """Transactions committed for submitted writes (``/metrics``: store commits)."""
        self.items = 0
        """Writes those transactions carried."""

    def every(self, interval: float, work: Callable[[], None]) -> None:
        """Run ``work`` on the writer thread every ``interval`` seconds (between transactions);
        it may write through :meth:`transaction`."""
        self._periodic.append((Periodic(interval, work), [0.0]))

    @property
    def health(self) -> StoreHealth:
        """Whether the last transaction committed (writes, heartbeats and probes alike)."""
        return self._health

    @property
    def stuck(self) -> str | None:
        """Why writes are refused at once (a transaction under way for too long), if so."""
        return self._stuck

    @property
    def lost(self) -> DatabaseLost | None:
        """Set once the database file was deleted or replaced: nothing can be stored.

        A new exception each time: raising one object again and again would chain every
        raise's frames (and what they hold) onto its traceback.
        """
        return None if self._lost is None else DatabaseLost(str(self._lost))

    def start(self) -> None:
        """Start the writer thread, and the thread that watches it for a stuck write."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="jobhooks-writer", daemon=True)
            self._thread.start()
            threading.Thread(target=self._watch, name="jobhooks-writer-watch", daemon=True).start()

    def stop(self) -> None:
        """Finish what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None
            self._stopping.set()

    def submit(self, operation: BatchOperation[P, R], payload: P) -> asyncio.Future[R]:
        """Queue one payload; the future resolves after its transaction commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        lost = self.lost
        if lost is not None:
            future.set_exception(lost)
            return future
        if self._stuck is not None:
            future.set_exception(StoreError(self._stuck))
            return future
        self._queue.put((operation, payload, future, loop))
        return future

    async def call(self, operation: BatchOperation[P, R], payload: P) -> R:
        """Submit and wait for the committed result."""
        return await self.submit(operation, payload)

    def transaction(self, work: Callable[[Connection], R]) -> R:
        """Run ``work`` in a transaction of its own, from the writer thread (periodic work);
        its outcome counts in :attr:`health` as any write does."""
        lost = self.lost
        if lost is not None:
            raise lost
        self._prepare()
        session: Session | None = None
        try:
            with watch() as watched:
                connection = self._connect()
                watched.bind(connection)
                changes = _changes(connection)
                with connection.begin():
                    session = session_of(connection)
                    result = work(connection)
            self._committed(wrote=_wrote(connection, changes))
        except Exception as exc:
            exc = overdue(exc) if watched.tripped else exc
            self._give_up(exc, session, None)
            self._failed(exc)
            raise exc
        return result

    def _prepare(self) -> None:
        """Run ``before``; what it raises counts as a failed write, and is raised."""
        if self._before is None:
            return
        try:
            self._before()
        except Exception as exc:
            self._failed(exc)
            raise

    # -- health ------------------------------------------------------------------

    def _committed(self, wrote: bool = True) -> None:
        """A transaction committed; one that ``wrote`` nothing (a claim that found nothing
        due) says nothing of writes, and ends no outage: on a read-only disk it commits."""
        if self._verify is not None:
            try:
                self._verify()
            except DatabaseLost as exc:
                self._lose(exc)
                raise
        now = self._clock()
        health = self._health
        if not health.ok and not wrote:
            return
        if not health.ok:
            logger.warning("the database takes writes again (after: %s)", health.problem)
        self._health = StoreHealth(
            True,
            last_commit=now,
            last_failure=health.last_failure,
            last_problem=health.last_problem,
            recovery=health.recovery,
        )

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, DatabaseLost):
            self._lose(exc)
            return
        if is_damaged(exc):
            self._lose(
                DatabaseLost(
                    f"{describe_failure(exc)}: the file is damaged (changed under jobhooks, "
                    "copied over while running, or a disk fault); every write is refused. "
                    "Stop jobhooks, restore the file from a backup or move it aside, and "
                    "start it again"
                )
            )
            return
        if isinstance(exc, IntegrityError | DataError):
            # Lost is reported by _lose; a constraint or a value the column cannot hold
            # is about one write, and the database works.
            return
        # Refused without an attempt: the failure that closed the gate is the problem.
        problem = exc.cause if isinstance(exc, DatabaseUnreachable) else describe_failure(exc)
        now = self._clock()
        health = self._health
        if health.ok or health.problem != problem:
            logger.error(
                "a write to the database failed: %s (%s: %s)", problem, type(exc).__name__, exc
            )
        since = health.since if not health.ok and health.since is not None else now
        recovery = next_recovery(health, now)
        self._health = StoreHealth(
            False, problem, since, health.last_commit, now, problem, recovery
        )

    def _lose(self, exc: DatabaseLost) -> None:
        if self._lost is None:
            logger.error("%s", exc)
            self._lost = exc
            now = self._clock()
            self._health = StoreHealth(
                False, str(exc), now, self._health.last_commit, now, str(exc)
            )

    # -- the thread -------------------------------------------------------------

    def _maintain(self) -> None:
        now = time.monotonic()
        for periodic, last in self._periodic:
            if now - last[0] >= periodic.interval:
                last[0] = now
                self._busy = (now, [])
                try:
                    periodic.work()
                except Exception:
                    logger.debug("periodic store work failed; trying again later", exc_info=True)
                finally:
                    self._done()

    def _done(self) -> None:
        """The transaction (or periodic work) under way ended."""
        with self._stuck_lock:
            self._busy = None
            was, self._stuck = self._stuck, None
        if was is not None:
            logger.warning("the write that was stuck ended; writes are taken again")

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                self.check_stuck(time.monotonic())
            except Exception:  # the thread must outlive whatever went wrong
                logger.exception("watching the database writer failed")

    def check_stuck(self, now: float) -> None:
        """Past :data:`STUCK_AFTER` seconds of one transaction at ``now``
        (:func:`time.monotonic`), refuse what waits behind it (not stored) and what comes
        until it ends; past :data:`GIVE_UP_AFTER`, answer its own writes (they may be
        stored when it ends). Called once a second by the writer's watch thread."""
        busy = self._busy
        if busy is None:
            return
        began, batch = busy
        held = now - began
        if held < STUCK_AFTER:
            return
        why = (
            f"a write to the database has not ended for {held:.0f} s (a hung disk or "
            "database server?); nothing more is taken until it ends"
        )
        with self._stuck_lock:
            if self._busy is not busy:
                return  # it ended meanwhile
            first, self._stuck = self._stuck is None, why
        if first:
            logger.error("%s", why)
        waiting: list[Any] = []
        stop = self._take_queued(waiting, self._queue.qsize() + 1)
        for item in waiting:
            self._fail(item, StoreError(why))
        if stop:
            self._queue.put(_STOP)
        if held >= GIVE_UP_AFTER:
            for item in batch:
                self._fail(
                    item,
                    CommitUnconfirmed(
                        f"the database did not end the write within {GIVE_UP_AFTER:g} s (a "
                        "hung disk or database server?); it may be stored when it does"
                    ),
                )

    def _wait(self) -> float:
        return min((periodic.interval for periodic, _last in self._periodic), default=1.0)

    def _connect(self) -> Connection:
        # Busy, one connection serves transaction after transaction: a pool checkout,
        # its reset on return (a rollback) and, on PostgreSQL, its ping cost a group as
        # much as a few of its rows. Idle, it goes back to the pool, which checks it when
        # it is next taken: a connection the server closed meanwhile (a restart, an idle
        # timeout) is replaced before a write fails on it.
        now = self._clock()
        if self._connection is not None and now - self._used > KEEP_CONNECTION:
            self._disconnect()
        if self._connection is None:
            self._connection = self._engine.connect()
        self._used = now
        return self._connection

    def _disconnect(self) -> None:
        """Give the kept connection back (after a failure, a quiet second, or at stop):
        the next transaction takes one from the pool (checked, on PostgreSQL), whatever
        state this one was in."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _give_up(self, exc: Exception, session: Session | None, xid: int | None) -> str | None:
        """After a transaction failed with ``exc``, give its connection up. When the server
        may not know it failed (PostgreSQL, and no answer from it: the connection broke),
        the connection is held while :meth:`_settle` deals with its session (so that no
        one else is given that session), then closed for good; returns what became of
        ``xid`` (None: not asked, or unknown)."""
        if session is None or getattr(getattr(exc, "orig", None), "sqlstate", None):
            self._disconnect()  # SQLite, or the server answered: it rolled back
            return None
        connection, self._connection = self._connection, None
        try:
            return self._settle(session, xid)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.invalidate()
                with contextlib.suppress(Exception):
                    connection.close()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._disconnect()

    def _serve(self) -> None:
        while True:
            self._maintain()
            try:
                first = self._queue.get(timeout=self._wait())
            except queue.Empty:
                continue
            if first is _STOP:
                return
            batch = [first]
            stop = self._take_queued(batch, self._max_batch)
            self._busy = (time.monotonic(), batch)
            try:
                self._write(batch)
            finally:
                self._done()
            if stop:
                return

    def _take_queued(self, batch: list[Any], limit: int) -> bool:
        """Move what is queued into ``batch``, up to ``limit`` writes in all; returns
        whether a stop came (it is taken, and ends the taking)."""
        while len(batch) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _write(self, batch: list[Any]) -> None:
        if self._lost is not None:
            for item in batch:
                self._fail(item, DatabaseLost(str(self._lost)))
            return
        try:
            self._prepare()
        except Exception as exc:
            for item in batch:
                self._fail(item, exc)
            return
        unreached: Exception | None = None
        try:
            results = self._apply(batch)
        except DatabaseLost as exc:
            for item in batch:
                self._fail(item, DatabaseLost(str(exc)))
            return
        except IntegrityError as exc:
            # On PostgreSQL another node may have committed the same report a moment
            # earlier; applied alone, each write sees it (a real conflict fails again).
            first_line = str(exc.orig or exc).splitlines()[0]
            logger.info(
                "a group of %d writes hit a constraint (%s); retrying them one by one",
                len(batch),
                first_line,
            )
        except Exception as exc:
            if self._reached:
                logger.debug("a group of %d writes failed; retrying them one by one", len(batch))
            else:
                unreached = exc
        else:
            self._deliver(batch, results)
            return
        if self._lost is not None:  # the failure showed the file is damaged
            for item in batch:
                self._fail(item, DatabaseLost(str(self._lost)))
            return
        if unreached is not None:  # one by one, each would wait for the database in turn
            for item in batch:
                self._fail(item, unreached)
            return
        unconfirmed = self._at_commit
        retries = sorted(batch, key=lambda item: item[0].again is None)
        for position, item in enumerate(retries):
            try:
                self._deliver([item], self._apply([item], again=True))
            except Exception as exc:
                # Stored, perhaps, by the failed group or by this retry's own COMMIT,
                # whatever stopped the retry (a connection refused at once included).
                self._fail(item, _unconfirmed(exc) if unconfirmed or self._at_commit else exc)
                if self._reached and _about_one_write(exc):
                    continue
                # Not about this write (unreachable, a lock held, a server that does not
                # answer): each other would wait for the same in turn.
                for rest in retries[position + 1 :]:
                    self._fail(rest, _unconfirmed(exc) if unconfirmed else exc)
                return

    def _apply(self, batch: list[Any], again: bool = False) -> list[Any]:
        groups: dict[str, tuple[BatchOperation[Any, Any], list[int]]] = {}
        for index, (operation, _payload, _future, _loop) in enumerate(batch):
            groups.setdefault(operation.name, (operation, []))[1].append(index)
        results: list[Any] = [None] * len(batch)
        now = self._clock()
        self._at_commit = False
        self._reached = False
        session: Session | None = None
        noted = False
        xid: int | None = None
        try:
            with watch() as watched:
                connection = self._connect()
                watched.bind(connection)
                self._reached = True
                changes = _changes(connection)
                with connection.begin():
                    session = session_of(connection)  # PostgreSQL's, once per connection
                    if again:
                        limit_lock_wait(connection, AGAIN_LOCK_WAIT)
                    for operation, indexes in groups.values():
                        payloads = [batch[i][1] for i in indexes]
                        apply = operation.again if again and operation.again else operation.apply
                        applied = apply(connection, payloads, now)
                        for index, result in zip(indexes, applied, strict=True):
                            results[index] = result
                    if session is not None and any(
                        not (op.repeatable or op.again) for op, _indexes in groups.values()
                    ):
                        noted = True
                        xid = transaction_id(connection)  # None: it wrote nothing
                    self._at_commit = True  # what fails from here on may have been stored
            # Applied again, a write that reads back what its failed group stored is one.
            self._committed(wrote=again or _wrote(connection, changes))
        except Exception as exc:
            exc = overdue(exc) if watched.tripped else exc
            fate = self._give_up(exc, session, xid if self._at_commit else None)
            if noted and xid is None:
                fate = "aborted"  # it wrote nothing: nothing to lose, applied again
            if session is None and refused_before_writing(exc):
                fate = "aborted"  # SQLite wrote nothing of it: a full or read-only disk
            if fate == "aborted":
                self._at_commit = False  # surely not stored
            if fate != "committed":
                self._failed(exc)
                for operation, _indexes in groups.values():
                    if operation.after_rollback is not None:
                        operation.after_rollback()
                raise exc
            logger.warning(
                "the answer to a COMMIT was lost (%s); the database says it committed the "
                "group of %d writes",
                describe_failure(exc),
                len(batch),
            )
            self._committed()
        for operation, indexes in groups.values():
            if operation.after_commit is not None:
                operation.after_commit([results[i] for i in indexes])
        self.batches += 1
        self.items += len(batch)
        return results

    def _settle(self, session: Session, xid: int | None) -> str | None:
        """After a transaction failed on PostgreSQL with no answer from the server: wait
        for the writer's old ``session`` to be done with it, then say what became of
        transaction ``xid`` (None: not asked).

        The session is the writer's own, abandoned: one waiting inside a transaction for
        its client (a COMMIT that never reached it) is ended at once, and one still busy
        (a COMMIT under way: a slow disk, a synchronous standby) after :data:`FATE_WAIT`,
        so nothing applied again waits on its locks. Returns ``aborted``, or
        ``committed`` while the session is still there (so the server has not restarted
        since, and the id is still that transaction's), or None: the caller cannot know
        (then the group is applied again, each write reading back what it finds)."""
        started = time.monotonic()
        ended = False
        while True:
            waited = time.monotonic() - started
            try:
                with watch(), self._engine.connect() as connection:
                    state = session_state(connection, session)
                    fate = None if xid is None else transaction_fate(connection, xid)
                    if state is None:  # gone: "committed" may be another's, after a crash
                        return "aborted" if fate == "aborted" else None
                    if state == "idle":  # its transaction is over
                        return fate if fate in ("committed", "aborted") else None
                    waiting = state.startswith("idle in transaction")  # for its lost client
                    if waiting or (waited >= FATE_WAIT and not ended):
                        ended = end_session(connection, session, idle_only=waiting)
            except Exception as exc:
                logger.debug("asking what became of a transaction failed: %s", exc)
            if waited >= FATE_WAIT + FATE_GRACE:
                return None
            time.sleep(FATE_POLL)

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
        error = exc if isinstance(exc, StoreError) else StoreError(describe_failure(exc))
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_reject, future, error)


def _changes(connection: Connection) -> int | None:
    """The rows SQLite's connection has changed since it opened (None on PostgreSQL, where
    every transaction counts as a write)."""
    if connection.dialect.name != "sqlite":
        return None
    changes: int = connection.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
    return changes


def _wrote(connection: Connection, changes: int | None) -> bool:
    """Whether the transaction just committed on ``connection`` changed a row, given the
    :func:`_changes` before it (always True on PostgreSQL)."""
    return changes is None or _changes(connection) != changes


def _resolve(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in pairs:
        if not future.done():
            future.set_result(result)


def _reject(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
