"""One poll: read the job history from where the stored position says, page by page,
and store each page's completions together with the position it reaches.

How the history is walked depends on what the platform supports (see
:mod:`jobhooks.poll.probe`). In every mode the rows already acted on are known
(``poll_rows``), so reading a row twice never stores it twice, and a row that
is still running is looked at again until it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from jobhooks.errors import CapabilityBroken, PlatformError
from jobhooks.platform.rest import PlatformApi
from jobhooks.poll.agents import AgentDirectory
from jobhooks.poll.catalog import JobTypeResolver
from jobhooks.poll.probe import ID_FIELD, START_FIELD, Capabilities
from jobhooks.poll.rows import (
    NIL,
    Candidate,
    JobStatus,
    MalformedRow,
    completion_fields,
    parse_row,
    parse_time,
    row_id,
)
from jobhooks.poll.sinks import DrySink, PollReport, Sink, StoreSink
from jobhooks.store.ports import PollerStore
from jobhooks.store.pull import OpenRow, PageWrite, PollState, WriteOutcome
from jobhooks.store.records import PlannedRun

__all__ = ["LOOKBACK", "PollCycle"]

logger = logging.getLogger("jobhooks.poll")

LOOKBACK = 86_400.0
"""With ``start`` at a past time, runs that started up to a day before it are read (those
that ended before it are skipped)."""
MARGIN = 300.0
"""Seconds the window of an offset-paged history reaches back beyond what it must."""
RECENT_PAGES = 4
"""Running rows this many pages below the position are read again with the new rows;
older ones (long runs) are asked for one by one."""
GONE_AFTER = 3
"""Full reads of a window that miss a running row before it counts as deleted."""
IN_FLIGHT = 2
"""Pages committing while the next one is read and parsed."""
GAP_WAIT = 120.0
"""Seconds a JobHistoryId skipped by the ids read around it is looked for again: the
platform's database may make ids visible out of order (transactions that commit in
another order than they took their ids)."""
MAX_GAPS = 10_000
"""Skipped ids kept at most (a jump of ids is a gap to wait for only when it is small)."""
GAP_JUMP = 1_000
"""A jump of more ids than this between two rows read is not waited for."""
GAP_READS = 10
"""Pages read at most in one poll to look for rows in the ids skipped."""
STRAGGLERS_PER_POLL = 50
"""Long-running rows asked for one by one in one poll at most (the others in later polls,
in turn)."""
MAX_PAGES = 100_000
"""Pages of one read at most: a platform that ignores paging would be read for ever."""
HEAD_CHECK = 300.0
"""Seconds between checks, in polls that found nothing new, that the platform's newest
JobHistoryId has not fallen below the position (a history reset or restored: its new
ids would all be at or below the position, so never read)."""


Plan = Callable[[uuid.UUID], tuple[PlannedRun, ...]]


class PollCycle:
    """Runs polls of one platform for one node (the holder of the lease)."""

    def __init__(
        self,
        store: PollerStore,
        api: PlatformApi,
        *,
        feed: str,
        owner: str,
        lease: float,
        page_size: int,
        start: float | None,
        plan: Plan,
        agents: AgentDirectory,
        job_types: JobTypeResolver,
        on_rows: Callable[[int], None] | None = None,
        on_outcome: Callable[[WriteOutcome], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.api = api
        self.feed = feed
        self.owner = owner
        self.lease = lease
        self.page_size = page_size
        self.start = start
        self.plan = plan
        self.agents = agents
        self.job_types = job_types
        self.on_rows = on_rows
        self.on_outcome = on_outcome
        self.clock = clock
        self.last_scan_max: float | None = None
        """Newest OperationStart read by the previous full read of a window."""
        self.misses: dict[int, int] = {}
        """Full reads of the window that missed each running row (see GONE_AFTER)."""
        self.gaps: dict[int, float] = {}
        """Ids skipped between rows read in keyset mode, and when each was first missed
        (see GAP_WAIT): read from the store at each poll, stored with the pages."""
        self.straggler_turn = 0
        self.head_checked_at: float | None = None
        self.fallen_head: int | None = None
        """The newest JobHistoryId when it was found below the position (else None)."""

    # -- one poll ------------------------------------------------------------------

    async def run(self, caps: Capabilities, *, dry_run: bool = False) -> PollReport:
        """Read from the stored position to the end of the history, storing as it goes
        (a dry run stores nothing and lists what it would create)."""
        started = self.clock()
        report = PollReport(mode=caps.mode, dry_run=dry_run)
        sink = DrySink(self, report) if dry_run else StoreSink(self, report)
        state = await self.store.pull.state(self.feed)
        if state is None or not state.initialized:
            state = await self._initialize(caps, sink, state)
        elif caps.mode == "keyset" and state.cursor is None:
            state = await self._adopt_cursor(caps, sink, state)
        if caps.mode == "keyset":
            await self._keyset(caps, sink, state, started)
        else:
            await self._offset(caps, sink, state, started)
        return report

    # -- starting points -----------------------------------------------------------

    async def _initialize(
        self, caps: Capabilities, sink: Sink, stored: PollState | None
    ) -> PollState:
        """Fix where the first poll starts: ``start`` decides, else when polling was first
        set up (a node stopped before its first poll loses nothing that ended since)."""
        first = await self.api.history(limit=1)
        now = first.date.timestamp() if first.date is not None else self.clock()
        horizon = self.start if self.start is not None else now
        if self.start is None and stored is not None:
            horizon = min(horizon, stored.started_at)
        cursor: int | None = None
        window: float | None = None
        if caps.mode == "keyset":
            if self.start is None:
                cursor = max(0, await self._head(caps) - RECENT_PAGES * self.page_size)
            else:
                cursor = await self._first_at(caps, self.start - LOOKBACK)
        elif caps.mode == "window":
            window = self.start - LOOKBACK if self.start is not None else now - MARGIN
        running = await self._running_rows(caps)
        if caps.mode == "keyset":
            running = [c for c in running if cursor is not None and c.id <= cursor]
        elif window is not None:
            starts = [c.row.start_seconds for c in running if c.row and c.row.start_seconds]
            window = min([window, *starts])
        if cursor is not None:
            where = f"after JobHistoryId {cursor}"
        elif window is not None:
            where = "from a time window"
        else:
            where = "whole (the platform offers no usable filter)"
        logger.info(
            "first poll of %s: %s, reading the history %s",
            self.api.client.base_url,
            caps.describe(),
            where,
        )
        await sink.write(
            PageWrite(
                self.feed,
                self.owner,
                self.lease,
                candidates=running,
                cursor=cursor,
                window_start=window,
                horizon=horizon,
                initialize=True,
            )
        )
        base = stored or PollState(self.feed, "", None, None, None, None, now, self.owner, 0, None)
        return replace(base, cursor=cursor, window_start=window, horizon=horizon)

    async def _adopt_cursor(self, caps: Capabilities, sink: Sink, state: PollState) -> PollState:
        """Keyset mode on a position kept by another mode: find the matching JobHistoryId."""
        since = state.window_start if state.window_start is not None else state.horizon
        cursor = await self._first_at(caps, (since or 0.0) - MARGIN)
        await sink.write(PageWrite(self.feed, self.owner, self.lease, cursor=cursor))
        return replace(state, cursor=cursor)

    async def _first_row_after(self, after: int) -> dict[str, Any] | None:
        rows = (await self.api.history(f'{ID_FIELD} -gt "{after}"', sort=ID_FIELD, limit=1)).rows
        return rows[0] if rows and isinstance(rows[0], dict) else None

    async def _head(self, caps: Capabilities) -> int:
        """The newest JobHistoryId (0 for an empty history)."""
        if caps.id_sort_desc:
            rows = (await self.api.history(sort=ID_FIELD, ascending=False, limit=1)).rows
            return (row_id(rows[0]) or 0) if rows else 0
        first = await self._first_row_after(0)
        if first is None:
            return 0
        low, step = row_id(first) or 1, 1024
        # Gallop until nothing lies beyond low + step, then halve that range.
        while (beyond := await self._first_row_after(low + step)) is not None:
            low = row_id(beyond) or low + step + 1
            step *= 2
        high = low + step
        while low < high:
            middle = (low + high + 1) // 2
            row = await self._first_row_after(middle - 1)
            if row is None:
                high = middle - 1
            else:
                low = row_id(row) or middle
        return low

    async def _first_at(self, caps: Capabilities, moment: float) -> int:
        """The smallest position whose next row started at ``moment`` or later (a binary
        search over JobHistoryId: starts grow with ids)."""
        low, high = 0, await self._head(caps)
        while low < high:
            middle = (low + high) // 2
            row = await self._first_row_after(middle)
            start = _start(row)
            if row is None or start is None or start >= moment:
                high = middle
            else:
                low = max(middle + 1, row_id(row) or middle + 1)
        return low

    async def _running_rows(self, caps: Capabilities) -> list[Candidate]:
        """Rows running now (Status 0, 1 or 2), when the platform can filter on Status."""
        if not caps.status_filter:
            return []
        found: list[Candidate] = []
        for status in (JobStatus.UNKNOWN, JobStatus.WAITING, JobStatus.IN_PROCESS):
            query = f'Status -eq "{int(status)}"'
            pages = _Pages(query)
            page = 1
            while True:
                rows = (await self.api.history(query, page=page, limit=self.page_size)).rows
                if not rows:
                    break
                pages.check(rows)
                found += [c for c in await self._prepare(rows) if c.row and not c.row.finished]
                page += 1
        return found

    # -- keyset --------------------------------------------------------------------

    async def _keyset(
        self, caps: Capabilities, sink: Sink, state: PollState, started: float
    ) -> None:
        cursor = state.cursor or 0
        opens: list[OpenRow] = await self.store.pull.open_rows(self.feed)
        span = RECENT_PAGES * self.page_size
        recent = [o for o in opens if o.id > cursor - span]
        stragglers = self._stragglers_now([o for o in opens if o.id <= cursor - span])
        gone: list[int] = []
        if stragglers:
            found: list[Any] = []
            for straggler in stragglers:
                row = await self._first_row_after(straggler.id - 1)
                if row is not None and row_id(row) == straggler.id:
                    found.append(row)
                else:
                    gone.append(straggler.id)
            await sink.write(
                PageWrite(self.feed, self.owner, self.lease, await self._prepare(found), gone=gone)
            )
        last = recent[0].id - 1 if recent else cursor
        self.gaps = await self.store.pull.awaited(self.feed)
        late = await self._late_rows(self._gaps_to_wait_for(started))
        if late:
            await sink.write(
                PageWrite(
                    self.feed,
                    self.owner,
                    self.lease,
                    await self._prepare(late),
                    found=[i for i in (row_id(row) for row in late) if i is not None],
                )
            )
        expected = {o.id for o in recent}
        read_any = False
        # Pipelined: the next page is fetched and this one parsed while earlier pages
        # commit (in order, on the store's writer thread).
        fetch = asyncio.ensure_future(self._keyset_page(last))
        commits: list[asyncio.Future[None]] = []
        try:
            while True:
                rows = await fetch
                if not rows:
                    break
                read_any = True
                ids = [i for i in (row_id(row) for row in rows) if i is not None]
                if not ids:
                    raise PlatformError(
                        f"a page of the job history has {len(rows)} rows and none has a usable "
                        "JobHistoryId",
                        kind="bad_response",
                    )
                if ids != sorted(ids) or ids[0] <= last:
                    raise CapabilityBroken(
                        f'the platform answered rows out of order for {ID_FIELD} -gt "{last}" '
                        f"sorted by {ID_FIELD} ({ids[:5]}...)",
                        "id",
                    )
                awaited, found = self._note_gaps(last, ids, started)
                last = ids[-1]
                fetch = asyncio.ensure_future(self._keyset_page(last))
                expected.difference_update(ids)
                candidates = await self._prepare(rows)
                newest = next((c for c in candidates if c.id == last), None)
                if len(commits) >= IN_FLIGHT:
                    await commits.pop(0)
                write = PageWrite(
                    self.feed,
                    self.owner,
                    self.lease,
                    candidates,
                    cursor=max(cursor, last),
                    cursor_start=newest.row.start_seconds
                    if newest is not None and newest.row is not None
                    else None,
                    awaited=awaited,
                    found=found,
                )
                commits.append(asyncio.ensure_future(sink.write(write)))
            while commits:
                await commits.pop(0)
        finally:
            pending: list[asyncio.Future[Any]] = [fetch, *commits]
            for task in pending:
                if not task.done():
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await sink.write(
            PageWrite(
                self.feed,
                self.owner,
                self.lease,
                gone=sorted(expected),
                caught_up_at=started,
                forget_awaited_before=started - GAP_WAIT,
            )
        )
        if not read_any and cursor > 0:
            await self._check_head(caps, cursor, started)

    async def _check_head(self, caps: Capabilities, cursor: int, now: float) -> None:
        """Raise if the platform's newest JobHistoryId is below ``cursor`` (checked every
        ``HEAD_CHECK`` seconds, and at every poll while it is)."""
        if (
            self.fallen_head is None
            and self.head_checked_at is not None
            and now - self.head_checked_at < HEAD_CHECK
        ):
            return
        self.head_checked_at = now
        head = await self._head(caps)
        if not 0 < head < cursor:
            if self.fallen_head is not None:
                logger.info(
                    "the platform's newest JobHistoryId is no longer below %d, the last "
                    "this poller read",
                    cursor,
                )
            self.fallen_head = None
            return
        self.fallen_head = head
        raise PlatformError(
            f"the platform's newest job history row has JobHistoryId {head}, below {cursor}, "
            f"the last one this poller read from {self.api.client.base_url}: its job history "
            "was reset or restored from an older backup, or its newest rows were deleted. "
            f"New runs are read only once their ids pass {cursor}, so runs with ids up to "
            f"{cursor} are not turned into completions. If only the newest rows were "
            "deleted, this clears with the next run; if the history was reset, start "
            "jobhooks on a new database ([server] database) to follow it from the start",
            kind="bad_response",
        )

    def _stragglers_now(self, stragglers: list[OpenRow]) -> list[OpenRow]:
        """The long-running rows to ask for in this poll: all of them, or
        ``STRAGGLERS_PER_POLL`` in turn when there are more."""
        if len(stragglers) <= STRAGGLERS_PER_POLL:
            return stragglers
        start = self.straggler_turn % len(stragglers)
        self.straggler_turn = start + STRAGGLERS_PER_POLL
        return [*stragglers, *stragglers][start : start + STRAGGLERS_PER_POLL]

    def _note_gaps(
        self, last: int, ids: list[int], now: float
    ) -> tuple[list[tuple[int, float]], list[int]]:
        """Note the ids skipped between ``last`` and the ids of a page just read; returns
        them (with ``now``) and the ids awaited until now that the page holds."""
        skipped: list[tuple[int, float]] = []
        found = [identifier for identifier in ids if self.gaps.pop(identifier, None) is not None]
        previous = last
        for identifier in ids:
            if previous and 1 < identifier - previous <= GAP_JUMP:
                for missing in range(previous + 1, identifier):
                    if len(self.gaps) >= MAX_GAPS:
                        return skipped, found
                    if missing not in self.gaps:
                        self.gaps[missing] = now
                        skipped.append((missing, now))
            previous = identifier
        return skipped, found

    async def _late_rows(self, waited: list[int]) -> list[Any]:
        """Rows that appeared in the ids skipped (``waited``, ascending): a page from the
        lowest id still waited for, then from the next one beyond that page, and so on,
        at most ``GAP_READS`` pages (the rows read around them are known already)."""
        found: list[Any] = []
        pending = waited
        for _ in range(GAP_READS):
            if not pending:
                break
            rows = await self._keyset_page(pending[0] - 1)
            ids = [i for i in (row_id(row) for row in rows) if i is not None]
            if not ids:
                break
            for row in rows:
                if self.gaps.pop(row_id(row) or 0, None) is not None:
                    found.append(row)
            pending = [gap for gap in pending if gap > max(ids)]
        return found

    def _gaps_to_wait_for(self, now: float) -> list[int]:
        """The skipped ids still worth reading again, ascending; older ones are forgotten
        (an id a rolled-back insert took never appears)."""
        for identifier, since in list(self.gaps.items()):
            if now - since > GAP_WAIT:
                del self.gaps[identifier]
        return sorted(self.gaps)

    async def _keyset_page(self, after: int) -> list[Any]:
        page = await self.api.history(
            f'{ID_FIELD} -gt "{after}"', sort=ID_FIELD, limit=self.page_size
        )
        if self.on_rows is not None:
            self.on_rows(len(page.rows))
        return page.rows

    # -- offset pages (window or whole history) ------------------------------------

    async def _offset(
        self, caps: Capabilities, sink: Sink, state: PollState, started: float
    ) -> None:
        opens: list[OpenRow] = await self.store.pull.open_rows(self.feed)
        bound: float | None = None
        query: str | None = None
        if caps.mode == "window":
            bound = state.window_start
            if bound is None:
                starts = [o.operation_start for o in opens if o.operation_start is not None]
                anchor = state.cursor_start if state.cursor_start is not None else state.horizon
                bound = min([(anchor or started) - MARGIN, *starts])
            query = f'{START_FIELD} -ge "{caps.format_time(bound)}"'
        sort = START_FIELD if caps.start_sort else None
        limit = caps.page_cap or self.page_size
        page = 1
        seen: set[int] = set()
        newest: float | None = None
        pages = _Pages(query or "the whole history")
        while True:
            answer = await self.api.history(query, sort=sort, page=page, limit=limit)
            rows = answer.rows
            # A run dated after the platform's own clock (its database clock jumped ahead)
            # moves the window no further than that clock: the runs after it are dated now.
            platform_now = answer.date.timestamp() if answer.date is not None else self.clock()
            if self.on_rows is not None:
                self.on_rows(len(rows))
            if not rows:
                break
            pages.check(rows)
            restart = False
            if caps.page_cap is None and len(rows) < limit:
                more = (await self.api.history(query, sort=sort, page=page + 1, limit=limit)).rows
                if more:
                    caps.page_cap = len(rows)
                    logger.info(
                        "the platform returns at most %d job history rows per page; "
                        "reading %d at a time",
                        len(rows),
                        len(rows),
                    )
                    restart = True
            candidates = await self._prepare(rows)
            for candidate in candidates:
                start = candidate.row.start_seconds if candidate.row else None
                if bound is not None and start is not None and start < bound - 1:
                    raise CapabilityBroken(
                        f"the platform answered a row that started before the window "
                        f"({candidate.id}) for {query}",
                        "date",
                    )
                if start is not None:
                    start = min(start, platform_now)
                    newest = start if newest is None else max(newest, start)
            seen.update(c.id for c in candidates)
            await sink.write(PageWrite(self.feed, self.owner, self.lease, candidates))
            if restart:
                limit, page = caps.page_cap or limit, 1
                pages = _Pages(query or "the whole history")
            else:
                page += 1
        gone = self._missing(opens, seen, bound)
        window = bound if caps.mode == "window" and state.window_start is None else None
        if caps.mode == "window":
            still: list[OpenRow] = await self.store.pull.open_rows(self.feed)
            starts = [o.operation_start for o in still if o.operation_start is not None]
            if self.last_scan_max is not None:
                candidate_bound = min([self.last_scan_max, *starts]) - MARGIN
                window = max(bound or 0.0, candidate_bound)
        self.last_scan_max = newest if newest is not None else self.last_scan_max
        await sink.write(
            PageWrite(
                self.feed,
                self.owner,
                self.lease,
                gone=gone,
                window_start=window,
                caught_up_at=started,
            )
        )

    def _missing(self, opens: Sequence[OpenRow], seen: set[int], bound: float | None) -> list[int]:
        """Running rows not read in a full read of the window, missed often enough to
        count as deleted (one miss may be a page that shifted under a deletion)."""
        gone = []
        for row in opens:
            if row.id in seen or (
                bound is not None
                and row.operation_start is not None
                and row.operation_start < bound
            ):
                self.misses.pop(row.id, None)
                continue
            self.misses[row.id] = self.misses.get(row.id, 0) + 1
            if self.misses[row.id] >= GONE_AFTER:
                gone.append(row.id)
                del self.misses[row.id]
        return gone

    # -- rows ----------------------------------------------------------------------

    async def _prepare(self, rows: Sequence[Any]) -> list[Candidate]:
        """Parse rows; resolve the agent and job type of finished ones."""
        candidates: list[Candidate] = []
        for raw in rows:
            identifier = row_id(raw)
            try:
                row = parse_row(raw)
            except MalformedRow as exc:
                if identifier is None:
                    logger.warning("%s; it is left out (nothing identifies it)", exc)
                    continue
                candidates.append(Candidate.of(None, identifier, problem=exc.problem))
                continue
            if not row.finished:
                candidates.append(Candidate.of(row, row.id))
                continue
            agent = await self.agents.resolve(row.agent_machine)
            job_type_id = await self.job_types.resolve(row.job_type)
            try:
                fields = completion_fields(
                    row,
                    agent.id if agent else NIL,
                    agent.username if agent else "",
                    job_type_id,
                    0,
                )
            except MalformedRow as exc:
                candidates.append(Candidate.of(row, row.id, problem=exc.problem))
                continue
            candidates.append(Candidate.of(row, row.id, fields, self.plan(job_type_id)))
        return candidates


def _start(row: dict[str, Any] | None) -> float | None:
    if row is None:
        return None
    try:
        moment = parse_time(row.get("OperationStart"))
    except ValueError:
        return None
    return moment.timestamp() if moment is not None else None


class _Pages:
    """The pages of one read, checked as they come: a page that repeats the one before (a
    platform or a proxy that ignores ``pq.pageReturned``) or more pages than any history
    has ends the read with an error, instead of reading for ever."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.count = 0
        self.previous: list[int | None] | None = None

    def check(self, rows: list[Any]) -> None:
        self.count += 1
        ids = [row_id(row) for row in rows]
        if ids == self.previous:
            raise PlatformError(
                f"the platform answered the same page of the job history twice in a row for "
                f"{self.query} (page {self.count}, rows {ids[:3]}...): it, or a proxy in front "
                "of it, ignores pq.pageReturned",
                kind="bad_response",
            )
        if self.count > MAX_PAGES:
            raise PlatformError(
                f"the job history for {self.query} did not end after {MAX_PAGES} pages",
                kind="bad_response",
            )
        self.previous = ids
