"""Which jobhooks processes are alive: a heartbeat row per process, and who is gone.

Every ``serve``, ``worker`` and ``poll`` process registers a row and beats
every :data:`HEARTBEAT_EVERY` seconds. A process is gone when it said so
(``stopped_at``), when its heartbeat is older than :data:`STALE_AFTER`, or at
once when it ran on this machine (same host name and boot) and its process no
longer exists. The runs a gone process held, and the poller's lease, are then
taken back without waiting for a lease to run out.

"This machine" means the same boot *and* the same PID namespace: a container
sharing the host's name sees other process numbers, so its processes are
judged by their heartbeats only.

Silence is counted as this process saw it (see :class:`Sightings`): on a clock
the wall clock's steps do not move, and only over time this process could reach
the database itself (an outage that cut every node off gave the others no more
chance to beat than it had).
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, exists, select, update

from jobhooks.errors import DatabaseLost
from jobhooks.store.dialect import upsert
from jobhooks.store.records import RunStatus
from jobhooks.store.tables import nodes, poll_state, runs

__all__ = [
    "BEAT_GAP",
    "HEARTBEAT_EVERY",
    "STALE_AFTER",
    "NodeIdentity",
    "Sightings",
    "beat",
    "dead_nodes",
    "forget_nodes",
    "has_node",
    "process_exists",
    "purge_nodes",
    "still_gone",
    "stop_node",
]

HEARTBEAT_EVERY = 2.0
"""Seconds between two heartbeats of a process."""
STALE_AFTER = 10.0
"""Seconds without a heartbeat after which a process counts as gone."""
BEAT_GAP = STALE_AFTER / 2
"""Seconds between two heartbeats of this process past which it was cut off (or stalled)
itself meanwhile: the others' silence then starts counting again (see :class:`Sightings`)."""


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def process_started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), or None."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_exists(pid: int, started: int | None) -> bool:
    """True while process ``pid`` runs (and, when ``started`` is known, is the same process
    rather than a later one that reused its number)."""
    if started is not None and Path("/proc/self/stat").exists():
        return process_started(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_space() -> str | None:
    """Where this process's number means this process: the boot, and the PID namespace
    (stored in the ``boot_id`` column). None when the boot cannot be told."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    if boot is None:
        return None
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return boot
    return f"{boot} {namespace}"


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """One running jobhooks process, as its heartbeat row names it."""

    id: str
    host: str
    pid_space: str | None
    """The boot and PID namespace ``pid`` belongs to (see :func:`_pid_space`)."""
    pid: int
    pid_started: int | None

    @classmethod
    def of_this_process(cls) -> NodeIdentity:
        """The identity of the calling process (a new id each time)."""
        host = socket.gethostname()[:200]
        pid = os.getpid()
        return cls(
            id=f"{host[:80]}:{pid}:{secrets.token_hex(4)}",
            host=host,
            pid_space=_pid_space(),
            pid=pid,
            pid_started=process_started(pid),
        )

    def same_machine(self, host: str, pid_space: str | None) -> bool:
        """True when a row names a process whose number can be looked up here: this
        machine, since its last boot, in this PID namespace."""
        return host == self.host and pid_space is not None and pid_space == self.pid_space


def beat(
    connection: Connection,
    node: NodeIdentity,
    started_at: float,
    now: float,
    *,
    expected: float | None = None,
) -> float:
    """Register ``node`` or renew its heartbeat (a row removed meanwhile comes back);
    returns the heartbeat written.

    ``expected`` is the heartbeat this process wrote last: finding an older one means
    the database went back in time (an older copy was put in its place), and raises
    :class:`DatabaseLost`.
    """
    if expected is not None:
        stored = connection.execute(
            select(nodes.c.heartbeat_at).where(nodes.c.id == node.id)
        ).scalar()
        if stored is not None and stored < expected:
            raise DatabaseLost(
                "the database went back in time (it holds an older heartbeat of this "
                "process than the last one written): an older copy was put in its place "
                "while jobhooks was running, so every write is refused; restart jobhooks"
            )
    statement = upsert(connection, nodes, "id", ["heartbeat_at", "stopped_at"])
    connection.execute(
        statement,
        [
            {
                "id": node.id,
                "host": node.host,
                "boot_id": node.pid_space,
                "pid": node.pid,
                "pid_started": node.pid_started,
                "started_at": started_at,
                "heartbeat_at": now,
                "stopped_at": None,
            }
        ],
    )
    return now


def stop_node(connection: Connection, node_id: str, now: float) -> None:
    """Record that a process stopped: what it still holds may be taken back at once."""
    connection.execute(update(nodes).where(nodes.c.id == node_id).values(stopped_at=now))


class Sightings:
    """The heartbeat last seen of each other process, and since when, as ``elapsed``
    counts (a clock the wall clock's steps do not move); and since when this process
    has reached the database without a break (its own heartbeats committing).

    Judged by the wall clock alone, a process's heartbeat goes stale when the clock
    steps forward (NTP correcting a clock that drifted, a virtual machine resumed):
    every process on the machine looks silent until it beats again, and another one
    would take the runs a live one holds. Seen before, a process is silent once its
    heartbeat has not changed for ``stale_after`` seconds of ``elapsed``, whatever the
    wall clock says (stepped back, it would otherwise hide a dead process for as long).

    A database outage (a restart, a failover, a network cut) silences every process at
    once: the first one back would take the others for gone, and run their runs again,
    a second before their own heartbeats commit. So silence counts only from when this
    process's heartbeat commits again after a failure or a gap of :data:`BEAT_GAP`, and
    not at all meanwhile (a read may come back before this process's heartbeat does). A
    process cut off alone is still found gone after ``stale_after`` seconds.
    """

    def __init__(self, elapsed: Callable[[], float] = time.monotonic) -> None:
        self._elapsed = elapsed
        self._seen: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._watched_since = -math.inf
        """When this process's current unbroken stretch of heartbeats began."""
        self._last_beat: float | None = None

    def beaten(self) -> None:
        """This process's heartbeat committed; one after a failure, or more than
        :data:`BEAT_GAP` seconds after the last, begins a new unbroken stretch."""
        now = self._elapsed()
        with self._lock:
            if self._last_beat is not None and now - self._last_beat > BEAT_GAP:
                self._watched_since = now
            self._last_beat = now

    def failed(self) -> None:
        """A heartbeat of this process failed: the next one begins a new stretch."""
        with self._lock:
            self._last_beat = -math.inf

    def silent(self, node: str, heartbeat: float, stale: bool, stale_after: float) -> bool:
        """Whether ``node``, found with ``heartbeat``, has been silent ``stale_after``
        seconds while this process watched; ``stale`` is the wall clock's answer, taken
        at the first sighting."""
        now = self._elapsed()
        with self._lock:
            since = self._watched_since
            if self._last_beat is not None and now - self._last_beat > BEAT_GAP:
                since = math.inf  # cut off (or stalled) now: nothing counts until it beats
            seen = self._seen.get(node)
            if seen is None or seen[0] != heartbeat:
                self._seen[node] = (heartbeat, now)
                # Changed: it beat since it was last seen.
                return seen is None and stale and now - since >= stale_after
            return now - max(seen[1], since) >= stale_after


def dead_nodes(
    connection: Connection,
    me: NodeIdentity,
    now: float,
    stale_after: float = STALE_AFTER,
    *,
    sightings: Sightings | None = None,
) -> dict[str, float]:
    """The processes that are gone (see the module's docstring), never ``me``: each id
    with the heartbeat it was found with (see :func:`still_gone`). With ``sightings``, a
    process seen before is silent by how long its heartbeat has not changed."""
    found = {}
    for row in connection.execute(select(nodes).where(nodes.c.id != me.id)):
        stale = row.heartbeat_at < now - stale_after
        if sightings is not None:
            stale = sightings.silent(row.id, row.heartbeat_at, stale, stale_after)
        silent = row.stopped_at is not None or stale
        if silent or (
            me.same_machine(row.host, row.boot_id) and not process_exists(row.pid, row.pid_started)
        ):
            found[row.id] = row.heartbeat_at
    return dict(sorted(found.items()))


def still_gone(connection: Connection, found: Mapping[str, float]) -> list[str]:
    """Of the processes ``found`` gone (each with the heartbeat it was found with), those
    that have not beaten since: one that was only paused (a stopped or migrated virtual
    machine, SIGSTOP) and beats again keeps its runs. Asked in the transaction that takes
    their runs, so a list found a moment ago takes nothing from a process alive again."""
    if not found:
        return []
    query = select(nodes.c.id, nodes.c.heartbeat_at, nodes.c.stopped_at).where(
        nodes.c.id.in_(list(found))
    )
    # Any other heartbeat is a beat since, a lower one too (the clock stepped back); one
    # found with an infinite heartbeat is taken whatever its heartbeat.
    alive = {
        row.id
        for row in connection.execute(query)
        if row.stopped_at is None
        and math.isfinite(found[row.id])
        and row.heartbeat_at != found[row.id]
    }
    return [node for node in found if node not in alive]


def _holding() -> Any:
    # A run is held only while it is open, so the (status, due_at) index finds them; a
    # poller's lease names its node too, and must be taken back at once as well.
    run = exists().where(runs.c.status.in_(RunStatus.OPEN), runs.c.worker == nodes.c.id)
    return run | exists().where(poll_state.c.owner == nodes.c.id)


def forget_nodes(connection: Connection, node_ids: Sequence[str]) -> None:
    """Delete the rows of gone processes that no longer hold any run."""
    if node_ids:
        connection.execute(delete(nodes).where(nodes.c.id.in_(list(node_ids)), ~_holding()))


def purge_nodes(connection: Connection, cutoff: float) -> None:
    """Forget processes silent since before ``cutoff`` that hold no run."""
    connection.execute(delete(nodes).where(nodes.c.heartbeat_at < cutoff, ~_holding()))


def has_node(worker: Any) -> Any:
    """SQL: the holder named by ``worker`` (a column) has a heartbeat row."""
    return exists().where(nodes.c.id == worker)
