"""Digests: what fires for a registration with ``group_by`` collects into one run per group,
in the transaction that stores each completion.

A digest is a run stored ``collecting``, due when its group's window closes
(``group_wait`` after its first completion), with its completions in
``digest_members``. While it collects, ``open_digests`` holds it for its group;
a completion that fires for the group joins it there. It stops taking
completions when its time is up or it is full (``group_max``; the next
completion opens a new digest) and when a worker takes its run: the claim
removes the ``open_digests`` row in its own transaction, so a completion
either joined before the claim (and is in what the handler gets) or opens the
next digest.

On PostgreSQL the groups of a batch are locked first (a transaction-scoped
advisory lock per group, as for job streaks), so two nodes adding to one group
at once make one digest, not two, and the open rows are read ``FOR UPDATE``,
so a claim's delete waits for a check-in that is joining the digest. Intake
never updates a digest's run row (a claim holds it), so the two cannot
deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, text, tuple_, update

from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.sdk.trigger import Trigger
from jobhooks.store.dialect import execute_many
from jobhooks.store.ids import new_id
from jobhooks.store.records import DigestPlan, PlannedRun, RunReceipt, RunStatus
from jobhooks.store.tables import digest_members, open_digests, runs

__all__ = ["DigestBook", "close_digests", "group_key", "members_of", "shorten_digests"]

_LOCK_SPACE = 7262517
"""The first key of this module's PostgreSQL advisory locks (the second is the group's hash)."""
_LOCK_GROUPS = text(
    "SELECT count(pg_advisory_xact_lock(:space, hashtext(g))) "
    "FROM (SELECT unnest(CAST(:groups AS text[])) AS g ORDER BY 1) AS groups"
)
_INSERT_MEMBER = digest_members.insert()
_INSERT_RUN = runs.insert()
_INSERT_OPEN = open_digests.insert()
_GROW = (
    update(open_digests)
    .where(open_digests.c.handler == bindparam("h"), open_digests.c.group_key == bindparam("k"))
    .values(size=bindparam("n"))
)

_OPEN = select(
    open_digests.c.handler,
    open_digests.c.group_key,
    open_digests.c.run_id,
    open_digests.c.closes_at,
    open_digests.c.size,
).where(
    tuple_(open_digests.c.handler, open_digests.c.group_key).in_(bindparam("g", expanding=True))
)
_OPEN_FOR_UPDATE = _OPEN.with_for_update()


def _shown(value: object) -> str:
    if isinstance(value, JobResult | OperationType):
        return value.display
    return "" if value is None else str(value)


def group_key(fields: Mapping[str, Any], plan: DigestPlan) -> str:
    """The group a completion's ``fields`` fall in: their ``group_by`` values as JSON."""
    return json.dumps([_shown(fields.get(name)) for name in plan.fields], ensure_ascii=False)


@dataclass
class _Open:
    run_id: str
    closes_at: float
    size: int
    stored: bool
    """Its open_digests row exists (else it is inserted at save)."""
    changed: bool = False


class DigestBook:
    """The open digests of the groups one batch of completions fires for: read (and locked)
    before the batch's completions are stored, joined or opened completion by
    completion, written after them (see :meth:`save`)."""

    def __init__(self, connection: Connection, wanted: Iterable[tuple[str, str]]) -> None:
        self.connection = connection
        self._open: dict[tuple[str, str], _Open] = {}
        self._closed: list[tuple[str, str]] = []
        self._new_runs: dict[str, dict[str, Any]] = {}
        self._members: list[dict[str, Any]] = []
        self._positions: dict[str, int] = {}
        groups = sorted(set(wanted))
        if not groups:
            return
        if connection.dialect.name == "postgresql":
            connection.execute(
                _LOCK_GROUPS,
                {"space": _LOCK_SPACE, "groups": [f"{h}\x1f{k}" for h, k in groups]},
            )
        query = _OPEN_FOR_UPDATE if connection.dialect.name == "postgresql" else _OPEN
        for handler, key, run_id, closes_at, size in connection.execute(query, {"g": groups}):
            self._open[(handler, key)] = _Open(run_id, closes_at, size, stored=True)
            self._positions[run_id] = size

    def add(
        self,
        completion_id: str,
        plan: PlannedRun,
        key: str,
        trigger: Trigger | None,
        now: float,
    ) -> RunReceipt:
        """Put a completion that fired ``plan``'s registration in its group's digest
        (opening one if none is collecting); returns the digest's receipt."""
        assert plan.digest is not None
        slot = (plan.handler, key)
        digest = self._open.get(slot)
        if digest is not None and (digest.closes_at <= now or digest.size >= plan.digest.most):
            self._close(slot, digest)
            digest = None
        if digest is None:
            digest = self._start(slot, completion_id, plan, key, trigger, now)
        else:
            digest.size += 1
            digest.changed = True
        position = self._positions.get(digest.run_id, 0)
        self._positions[digest.run_id] = position + 1
        self._members.append(
            {
                "run_id": digest.run_id,
                "position": position,
                "completion_id": completion_id,
                "trigger": json.dumps(trigger.to_dict(), ensure_ascii=False) if trigger else None,
            }
        )
        if digest.size >= plan.digest.most:
            self._close(slot, digest)
        return RunReceipt(
            digest.run_id, plan.handler, RunStatus.COLLECTING, trigger, digest.closes_at
        )

    def _start(
        self,
        slot: tuple[str, str],
        completion_id: str,
        plan: PlannedRun,
        key: str,
        trigger: Trigger | None,
        now: float,
    ) -> _Open:
        assert plan.digest is not None
        run_id = new_id()
        closes_at = now + plan.digest.wait
        self._new_runs[run_id] = {
            "id": run_id,
            "completion_id": completion_id,
            "handler": plan.handler,
            "status": RunStatus.COLLECTING,
            "attempts": 0,
            "total_attempts": 0,
            "max_attempts": plan.max_attempts,
            "due_at": closes_at,
            "lease_until": None,
            "worker": None,
            "created_at": now,
            "started_at": None,
            "trigger": json.dumps(trigger.to_dict(), ensure_ascii=False) if trigger else None,
            "group_key": key,
        }
        digest = self._open[slot] = _Open(run_id, closes_at, 1, stored=False, changed=True)
        return digest

    def _close(self, slot: tuple[str, str], digest: _Open) -> None:
        del self._open[slot]
        if digest.stored:
            self._closed.append(slot)

    def save(self) -> None:
        """Write the digests opened, joined and closed (after the batch's completions)."""
        connection = self.connection
        if self._closed:
            connection.execute(
                delete(open_digests).where(
                    tuple_(open_digests.c.handler, open_digests.c.group_key).in_(self._closed)
                )
            )
        if self._new_runs:
            execute_many(connection, _INSERT_RUN, list(self._new_runs.values()))
        if self._members:
            execute_many(connection, _INSERT_MEMBER, self._members)
        fresh = [
            {"handler": h, "group_key": k, "run_id": d.run_id, "closes_at": d.closes_at,
             "size": d.size}
            for (h, k), d in self._open.items()
            if not d.stored
        ]  # fmt: skip
        if fresh:
            execute_many(connection, _INSERT_OPEN, fresh)
        grown = [
            {"h": h, "k": k, "n": d.size}
            for (h, k), d in self._open.items()
            if d.stored and d.changed
        ]
        if grown:
            execute_many(connection, _GROW, grown)


def close_digests(connection: Connection, run_ids: Iterable[str]) -> None:
    """Close the digests of runs a worker takes (in the claim's transaction): what fires
    for their groups from now on opens new ones."""
    ids = list(run_ids)
    if ids:
        connection.execute(delete(open_digests).where(open_digests.c.run_id.in_(ids)))


_SHORTEN_RUN = (
    update(runs)
    .where(runs.c.id == bindparam("r"), runs.c.status == RunStatus.COLLECTING)
    .values(due_at=bindparam("due"))
)
_SHORTEN_OPEN = (
    update(open_digests)
    .where(open_digests.c.run_id == bindparam("r"))
    .values(closes_at=bindparam("due"))
)


def shorten_digests(
    connection: Connection, waits: Sequence[tuple[str, float]], _now: float
) -> list[int]:
    """Make the digests collecting for each (handler, group_wait) close at most that long
    after they opened: a reload that shortened ``group_wait`` applies to them too (they
    kept the window they opened with, up to a year). Returns how many per handler.

    The run row is updated before the open row, as a claim does, so the two wait for
    each other rather than deadlock."""
    counts = []
    for handler, wait in waits:
        longer = connection.execute(
            select(runs.c.id, runs.c.created_at)
            .where(
                runs.c.handler == handler,
                runs.c.status == RunStatus.COLLECTING,
                runs.c.due_at > runs.c.created_at + wait,
            )
            # One order on every node: two nodes reloading at once lock the rows alike.
            .order_by(runs.c.id)
        ).all()
        rows = [{"r": run_id, "due": created_at + wait} for run_id, created_at in longer]
        if rows:
            execute_many(connection, _SHORTEN_RUN, rows)
            execute_many(connection, _SHORTEN_OPEN, rows)
        counts.append(len(rows))
    return counts


def members_of(
    connection: Connection, run_ids: Iterable[str]
) -> dict[str, list[tuple[str, str | None]]]:
    """The completions of each digest run, in the order they joined: (completion id, its
    trigger as stored)."""
    ids = list(run_ids)
    found: dict[str, list[tuple[str, str | None]]] = {run_id: [] for run_id in ids}
    if not ids:
        return found
    query = (
        select(digest_members.c.run_id, digest_members.c.completion_id, digest_members.c.trigger)
        .where(digest_members.c.run_id.in_(ids))
        .order_by(digest_members.c.run_id, digest_members.c.position)
    )
    for row in connection.execute(query):
        found[row.run_id].append((row.completion_id, row.trigger))
    return found
