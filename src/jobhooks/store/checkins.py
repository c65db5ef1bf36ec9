"""Stage one in the store: a batch of completion reports in one transaction.

Duplicates (same Idempotency-Key, or same agent and job history id) answer
with the original. The retry count of a report that omits it is the number
of consecutive failed completions of the same job just before it (its streak,
see :mod:`jobhooks.store.streaks`), and the registrations with rules run or
not by that streak, decided in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import CompoundSelect, Connection, Select, and_, select
from sqlalchemy.exc import IntegrityError

from jobhooks.store.catalog import record_seen
from jobhooks.store.dialect import (
    RUNS_CHANNEL,
    bind_list,
    bind_pairs,
    execute_many,
    notify,
    one_of,
    pairs_from,
)
from jobhooks.store.digests import DigestBook, group_key
from jobhooks.store.ids import guid_text
from jobhooks.store.ports import LocalWorker
from jobhooks.store.queue import (
    HandOff,
    Reserve,
    give_back_runs,
    insert_runs,
    new_runs,
    stored_trigger,
)
from jobhooks.store.records import CheckinReceipt, NewCompletion, RunReceipt, RunStatus
from jobhooks.store.stats import record_completions, shard
from jobhooks.store.streaks import JobHistory, JobKey
from jobhooks.store.tables import completions, digest_members, runs
from jobhooks.store.writer import BatchOperation

__all__ = ["CheckinWrites", "completion_row", "insert_checkins"]

_INSERT_COMPLETION = completions.insert()


def completion_row(
    completion_id: str,
    fields: dict[str, Any],
    received_at: float,
    *,
    computed: bool = False,
    idempotency_key: str | None = None,
    rule_notes: str | None = None,
) -> dict[str, Any]:
    """The completions row for parsed context fields (``computed``: jobhooks counted the
    retry count; ``rule_notes``: why registrations with rules did not run, as JSON)."""
    timestamp = fields.get("request_timestamp")
    return {
        "id": completion_id,
        "received_at": received_at,
        "source": fields.get("source", "check-in"),
        "agent_id": guid_text(fields["agent_id"]),
        "username": fields.get("username", ""),
        "client_machine": fields.get("client_machine", ""),
        "job_id": guid_text(fields["job_id"]),
        "job_type": fields["job_type"],
        "job_type_id": guid_text(fields["job_type_id"]),
        "operation_type": int(fields.get("operation_type", 0)),
        "job_result": int(fields["job_result"]),
        "certificate_id": fields.get("certificate_id"),
        "request_timestamp": timestamp.timestamp() if isinstance(timestamp, datetime) else None,
        "current_retry_count": fields["current_retry_count"],
        "retry_count_computed": computed,
        "message": fields.get("message"),
        "job_history_id": fields.get("job_history_id"),
        "idempotency_key": idempotency_key,
        "rule_notes": rule_notes,
    }


_DEDUPE_COLUMNS = {"key": completions.c.idempotency_key, "history": completions.c.job_history_id}


@cache
def _originals_query(dialect: str, kind: str) -> Select[str, str, Any]:
    """The stored completions of the (agent, key) pairs bound as ``pairs``: one index
    search each, whatever their number."""
    column = _DEDUPE_COLUMNS[kind]
    wanted = pairs_from(dialect, "pairs", ("agent", "wanted"), column.type)
    return (
        select(completions.c.id, completions.c.agent_id, column)
        .select_from(wanted)
        .join(
            completions, and_(completions.c.agent_id == wanted.c.agent, column == wanted.c.wanted)
        )
    )


def _originals(
    connection: Connection, keys: Sequence[list[tuple[str, str, Any]]]
) -> dict[tuple[str, str, Any], str]:
    """Stored completions that reports with these dedupe ``keys`` repeat, by (kind, agent,
    key)."""
    wanted: dict[str, set[tuple[str, Any]]] = {kind: set() for kind in _DEDUPE_COLUMNS}
    for item_keys in keys:
        for kind, agent, key in item_keys:
            wanted[kind].add((agent, key))
    dialect = connection.dialect.name
    found: dict[tuple[str, str, Any], str] = {}
    for kind, pairs in wanted.items():
        if not pairs:
            continue
        query = _originals_query(dialect, kind)
        for completion_id, agent, key in connection.execute(
            query, bind_pairs(dialect, "pairs", sorted(pairs))
        ):
            if (agent, key) in pairs:
                found[(kind, agent, key)] = completion_id
    return found


def _dedupe_keys(item: NewCompletion) -> list[tuple[str, str, Any]]:
    """The (kind, agent, key) pairs by which a report repeats an earlier one."""
    agent = guid_text(item.fields["agent_id"])
    keys = []
    if item.idempotency_key:
        keys.append(("key", agent, item.idempotency_key))
    if item.fields.get("job_history_id") is not None:
        keys.append(("history", agent, item.fields["job_history_id"]))
    return keys


def _job_key(fields: dict[str, Any]) -> JobKey:
    """The job a report's streak belongs to: its agent's job of that id."""
    return guid_text(fields["agent_id"]), guid_text(fields["job_id"])


@lru_cache(maxsize=4096)
def _notes_json(notes: tuple[tuple[str, str], ...]) -> str:
    """A completion's "not sent" notes as stored (the same few repeat: kept encoded)."""
    return json.dumps([{"handler": h, "reason": r} for h, r in notes], ensure_ascii=False)


@cache
def _runs_query(dialect: str) -> CompoundSelect[str, str, str, str, str | None, float]:
    """The runs of the completions bound as ``ids``, and the digests they joined."""
    columns = (runs.c.id, runs.c.handler, runs.c.status, runs.c.trigger, runs.c.due_at)
    own = select(runs.c.completion_id.label("owner"), *columns).where(
        one_of(dialect, runs.c.completion_id, "ids"), runs.c.group_key.is_(None)
    )
    joined = select(digest_members.c.completion_id.label("owner"), *columns).where(
        one_of(dialect, digest_members.c.completion_id, "ids"),
        runs.c.id == digest_members.c.run_id,
    )
    return own.union_all(joined).order_by("id")


@cache
def _stored_query(dialect: str) -> Select[str, int]:
    """The stored completions among the ids bound as ``ids``, with their retry counts."""
    return select(completions.c.id, completions.c.current_retry_count).where(
        one_of(dialect, completions.c.id, "ids")
    )


def _runs_of(connection: Connection, completion_ids: list[str]) -> dict[str, list[RunReceipt]]:
    """The runs each completion made, and the digests it joined."""
    found: dict[str, list[RunReceipt]] = {cid: [] for cid in completion_ids}
    dialect = connection.dialect.name
    ids = {"ids": bind_list(dialect, completion_ids)}
    for row in connection.execute(_runs_query(dialect), ids):
        collecting = row.status == RunStatus.COLLECTING
        found[row.owner].append(
            RunReceipt(
                row.id,
                row.handler,
                row.status,
                stored_trigger(row.trigger),
                row.due_at if collecting else None,
            )
        )
    return found


def _stored_receipts(connection: Connection, ids: Sequence[str]) -> dict[str, CheckinReceipt]:
    """The receipts of the completions among ``ids`` that are stored, by id."""
    dialect = connection.dialect.name
    found = {
        completion_id: retry_count
        for completion_id, retry_count in connection.execute(
            _stored_query(dialect), {"ids": bind_list(dialect, ids)}
        )
    }
    runs_of = _runs_of(connection, sorted(found)) if found else {}
    return {
        completion_id: CheckinReceipt(
            completion_id, False, runs_of[completion_id], current_retry_count=retry_count
        )
        for completion_id, retry_count in found.items()
    }


def insert_checkins(
    connection: Connection,
    items: Sequence[NewCompletion],
    now: float,
    reserve: Reserve | None = None,
    known_job_types: set[str] | None = None,
) -> list[CheckinReceipt]:
    """Store a batch of reports in the open transaction; one receipt per report, in order.

    ``reserve`` lets this process's worker take runs at once: those runs are
    stored pending under a lease held by that worker, so a crash before they
    finish only delays them until the lease expires.
    """
    keys_of = [_dedupe_keys(item) for item in items]
    originals = _originals(connection, keys_of) if any(keys_of) else {}
    receipts: list[CheckinReceipt | None] = [None] * len(items)
    duplicates: dict[int, str] = {}
    fresh: list[tuple[int, NewCompletion, str]] = []
    for index, (item, keys) in enumerate(zip(items, keys_of, strict=True)):
        original = next((originals[k] for k in keys if k in originals), None)
        if original is not None:
            duplicates[index] = original
            continue
        completion_id = item.id
        for key in keys:
            originals[key] = completion_id
        fresh.append((index, item, completion_id))

    rules = [plan.rule for _, item, _ in fresh for plan in item.runs if plan.rule is not None]
    history = JobHistory(
        connection,
        (_job_key(item.fields) for _, item, _ in fresh),
        stateful=any(rule.stateful for rule in rules),
    )
    completion_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    decided = []
    for index, item, completion_id in fresh:
        # The context its runs get (a copy: a batch that fails is applied again).
        fields = dict(item.fields)
        job = _job_key(fields)
        before, after = history.record(job, fields["job_result"], now)
        computed = fields.get("current_retry_count") is None
        if computed:
            fields["current_retry_count"] = before.failures
        fired, notes = history.decide(job, fields, item.runs, before, after, now)
        completion_rows.append(
            completion_row(
                completion_id,
                fields,
                now,
                computed=computed,
                idempotency_key=item.idempotency_key,
                rule_notes=_notes_json(tuple(notes)) if notes else None,
            )
        )
        fields["completion_id"] = completion_id
        decided.append((index, completion_id, fields, fired))
    slots = {
        (completion_id, plan.handler): group_key(fields, plan.digest)
        for _index, completion_id, fields, fired in decided
        for plan, _trigger in fired
        if plan.digest is not None
    }
    book = DigestBook(connection, ((handler, key) for (_, handler), key in slots.items()))
    handoff = HandOff(
        reserve, sum(plan.digest is None for *_rest, fired in decided for plan, _ in fired)
    )
    for index, completion_id, fields, fired in decided:
        receipt = CheckinReceipt(
            completion_id, False, [], current_retry_count=fields["current_retry_count"]
        )
        each = [(plan, trigger) for plan, trigger in fired if plan.digest is None]
        rows, receipt.runs, receipt.handed_off = new_runs(completion_id, fields, each, now, handoff)
        for plan, trigger in fired:
            if plan.digest is not None:
                slot = slots[(completion_id, plan.handler)]
                receipt.runs.append(book.add(completion_id, plan, slot, trigger, now))
        run_rows += rows
        receipts[index] = receipt
    handoff.give_back()

    if completion_rows:
        execute_many(connection, _INSERT_COMPLETION, completion_rows)
        insert_runs(connection, run_rows)
        book.save()
        history.save(connection, now)
        seen = {
            guid_text(item.fields["job_type_id"]): item.fields["job_type"] for _, item, _ in fresh
        }
        record_seen(connection, seen, now, known_job_types)
        record_completions(connection, completion_rows, shard())

    if duplicates:
        stored = _runs_of(connection, sorted(set(duplicates.values())))
        fresh_by_id = {r.id: r for r in receipts if r is not None}
        for index, original in duplicates.items():
            runs_now = stored.get(original) or (
                fresh_by_id[original].runs if original in fresh_by_id else []
            )
            receipts[index] = CheckinReceipt(original, True, list(runs_now))
    return [receipt for receipt in receipts if receipt is not None]


class CheckinWrites:
    """The check-in as a kind of group-committed write: reports stored with their runs, the
    runs this process's worker has room for handed to it once they are committed, and a
    wake-up (PostgreSQL) for the workers elsewhere when some are left waiting."""

    def __init__(self) -> None:
        self._local: LocalWorker | None = None
        self._reserved = 0
        """Slots the local worker granted to the open transaction (writer thread only)."""
        self._known_job_types: set[str] = set()
        self._given_back: float | None = None
        """When runs went back to the queue in the open transaction: the worker looks for
        them once it commits (writer thread only)."""
        self.operation: BatchOperation[NewCompletion, CheckinReceipt] = BatchOperation(
            "checkin", self.apply, self.after_commit, self.after_rollback, self.apply_again
        )

    def set_local_worker(self, worker: LocalWorker | None) -> None:
        """Let check-ins hand runs straight to this process's worker."""
        self._local = worker

    def _reserve(self, count: int) -> tuple[str, int]:
        assert self._local is not None
        worker, granted = self._local.reserve(count)
        self._reserved += granted if count >= 0 else count
        return worker, granted

    def apply(
        self, connection: Connection, items: Sequence[NewCompletion], now: float
    ) -> list[CheckinReceipt]:
        """Store reports in the open transaction (see :func:`insert_checkins`)."""
        receipts = insert_checkins(
            connection,
            items,
            now,
            reserve=self._reserve if self._local is not None else None,
            known_job_types=self._known_job_types,
        )
        if any(len(r.runs) > len(r.handed_off) for r in receipts if not r.duplicate):
            notify(connection, RUNS_CHANNEL)
        return receipts

    def apply_again(
        self, connection: Connection, items: Sequence[NewCompletion], now: float
    ) -> list[CheckinReceipt]:
        """Store reports whose group failed. A report that group stored after all (the
        connection was lost as it committed) is answered from what is stored: its runs are
        not created twice, and those it handed to this process's worker wait in the queue
        again (see :meth:`_give_back_handed`). On PostgreSQL, a report still locked by the
        failed group's session is waited for (at most the writer's ``AGAIN_LOCK_WAIT``)."""
        ids = [item.id for item in items]
        stored = _stored_receipts(connection, ids)
        self._give_back_handed(connection, stored, now)
        fresh = [item for item in items if item.id not in stored]
        applied: list[CheckinReceipt] = []
        if fresh:
            try:
                with connection.begin_nested():
                    applied = self.apply(connection, fresh, now)
            except IntegrityError:
                # The group's COMMIT was still under way when the lookup ran; it has
                # finished now (the insert waited for it).
                self.after_rollback()
                stored = _stored_receipts(connection, ids)
                if any(item.id not in stored for item in fresh):
                    raise
                self._give_back_handed(connection, stored, now)
        new = iter(applied)
        return [stored[item.id] if item.id in stored else next(new) for item in items]

    def _give_back_handed(
        self, connection: Connection, stored: dict[str, CheckinReceipt], now: float
    ) -> None:
        """The runs a failed group handed to this process's worker, when that group was
        stored after all: the worker never got them (they are handed over after the
        commit), and a live process's leases are never taken back, so they go back to
        the queue, not started, for the next claim. (Check-ins are retried before the
        group's claims, see ``BatchOperation.again``: every run of these reports that
        this worker holds now was leased by the failed group, and never received.)"""
        if self._local is None or not stored:
            return
        run_ids = [run.id for receipt in stored.values() for run in receipt.runs]
        if run_ids and give_back_runs(connection, [(self._local.id, run_ids)], now)[0]:
            self._given_back = now

    def after_commit(self, receipts: Sequence[CheckinReceipt]) -> None:
        """Start the runs handed to the local worker, now that they are committed, and have
        it look again when the digests they joined close."""
        self._reserved = 0
        if self._local is None:
            return
        if self._given_back is not None:
            self._local.wake_at(self._given_back)
            self._given_back = None
        handed = [run for receipt in receipts for run in receipt.handed_off]
        if handed:
            self._local.deliver(handed)
        closing = [run.closes_at for receipt in receipts for run in receipt.runs if run.closes_at]
        if closing:
            self._local.wake_at(min(closing))

    def after_rollback(self) -> None:
        """Give the local worker its slots back: nothing will run them (on PostgreSQL,
        typically another node stored the same report first)."""
        if self._reserved and self._local is not None:
            self._local.reserve(-self._reserved)
        self._reserved = 0
        self._given_back = None
