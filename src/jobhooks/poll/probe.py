"""What this platform's job history endpoint supports, found out by asking it.

The documentation names the query fields (AgentId, Agent, JobId, Result,
Status, JobType, Message, OperationStart, ScheduleType, TargetPath) but not
which fields sort, how large a page may be, or how a time is written inside a
query. Each probe is one small request; an answer is believed only when the
rows it returns obey it (a platform may ignore what it does not know).

The poller then reads the history one of three ways, best first:

* ``keyset``: ``JobHistoryId -gt "N"`` sorted by JobHistoryId, always page 1.
  No offsets, so rows inserted or deleted meanwhile shift nothing.
* ``window``: ``OperationStart -ge "T"`` in offset pages, the window read again
  from the oldest running row on each poll.
* ``scan``: the whole history in offset pages on each poll (no usable filter).

Only a definite refusal (400, 404, 422 and the like: the platform does not take
the query) counts against a way of reading. A platform that is busy or failing
(408, 429, 5xx, a timeout, a dropped connection) decides nothing: the probe
fails, and is sent again on the next poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobhooks.errors import PlatformBusy, PlatformError
from jobhooks.platform.rest import PlatformApi
from jobhooks.poll.rows import JobStatus, parse_time, row_id

__all__ = ["DATE_FORMATS", "Capabilities", "probe"]

logger = logging.getLogger("jobhooks.poll")

ID_FIELD = "JobHistoryId"
START_FIELD = "OperationStart"
DATE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%m/%d/%Y %H:%M:%S",
)
"""How a time may be written in a query, tried in this order (all UTC)."""
SAMPLE = 50


@dataclass(slots=True)
class Capabilities:
    """What the job history endpoint was found to support."""

    id_filter: bool = False
    id_sort: bool = False
    id_sort_desc: bool = False
    status_filter: bool = False
    start_sort: bool = False
    date_format: str | None = None
    page_cap: int | None = None
    """The most rows the platform returns per page, once seen to cap ``returnLimit``."""

    @property
    def mode(self) -> str:
        """``keyset``, ``window`` or ``scan`` (see the module's docstring)."""
        if self.id_filter and self.id_sort:
            return "keyset"
        if self.date_format is not None:
            return "window"
        return "scan"

    def describe(self) -> str:
        """One line for the log: the mode and what it rests on."""
        parts = [f"mode {self.mode}"]
        parts.append("JobHistoryId filter and sort" if self.mode == "keyset" else "")
        if self.mode == "window":
            parts.append(f'OperationStart -ge "{self.date_format}"')
            parts.append("sorted by OperationStart" if self.start_sort else "platform's order")
        if self.page_cap:
            parts.append(f"pages capped at {self.page_cap} rows")
        return ", ".join(part for part in parts if part)

    def format_time(self, moment: float) -> str:
        """A time as this platform's queries take it."""
        assert self.date_format is not None
        return datetime.fromtimestamp(moment, UTC).strftime(self.date_format)


async def _try(api: PlatformApi, **options: Any) -> list[Any] | None:
    """The rows of one probe, or None when the platform refuses it (400 and the like).

    Raises :class:`PlatformBusy` when the platform could not answer it now (408, 429,
    5xx), and :class:`PlatformError` when it cannot be read at all: neither says
    whether the query is supported.
    """
    try:
        page = await api.history(**options)
    except PlatformBusy as exc:
        raise PlatformBusy(
            f"the platform is busy: {exc}; which way to read the history is decided once "
            "it answers (will retry)",
            exc.kind,
            exc.status,
            exc.retry_after,
        ) from exc
    except PlatformError as exc:
        if exc.kind == "client_error":
            logger.debug("probe %s refused: %s", options, exc)
            return None
        raise
    return page.rows


def _ids(rows: list[Any]) -> list[int]:
    return [i for i in (row_id(row) for row in rows) if i is not None]


def _starts(rows: list[Any]) -> list[datetime]:
    found = []
    for row in rows:
        try:
            moment = parse_time(row.get("OperationStart")) if isinstance(row, dict) else None
        except ValueError:
            moment = None
        if moment is not None:
            found.append(moment)
    return found


async def _date_format(api: PlatformApi, sample: list[Any]) -> str | None:
    anchor = next(
        (
            row
            for row in sample
            if isinstance(row, dict) and row_id(row) and _starts([row]) and row.get("JobId")
        ),
        None,
    )
    for fmt in DATE_FORMATS:
        if anchor is None:
            moment = datetime.now(UTC) - timedelta(days=1)
            rows = await _try(api, query=f'{START_FIELD} -ge "{moment.strftime(fmt)}"', limit=1)
            if rows is not None:
                return fmt
            continue
        start = _starts([anchor])[0].replace(microsecond=0)
        job = f'JobId -eq "{anchor["JobId"]}"'
        at = await _try(
            api, query=f'{job} -and {START_FIELD} -ge "{start.strftime(fmt)}"', limit=SAMPLE
        )
        if at is None or row_id(anchor) not in _ids(at):
            continue
        later = start + timedelta(seconds=1)
        after = await _try(
            api, query=f'{job} -and {START_FIELD} -ge "{later.strftime(fmt)}"', limit=SAMPLE
        )
        if after is not None and row_id(anchor) not in _ids(after):
            return fmt
    return None


async def probe(api: PlatformApi, *, need_dates: bool = False) -> Capabilities:
    """Find out what the job history endpoint supports (a few small requests).

    Raises :class:`PlatformError` when the platform cannot be read at all (the
    first, plain request fails), and :class:`PlatformBusy` when it could not answer a
    probe now: nothing is decided then, and the caller probes again later.
    """
    caps = Capabilities()
    sample = (await api.history(limit=SAMPLE)).rows
    by_id = await _try(api, sort=ID_FIELD, ascending=True, limit=SAMPLE)
    if by_id is not None:
        ids = _ids(by_id)
        caps.id_sort = ids == sorted(ids) and (len(ids) == len(by_id))
    known = sorted(_ids(sample) + _ids(by_id or []))
    pivot = known[len(known) // 2] if known else 0
    above = await _try(
        api,
        query=f'{ID_FIELD} -gt "{pivot}"',
        sort=ID_FIELD if caps.id_sort else None,
        limit=SAMPLE,
    )
    if above is not None:
        ids = _ids(above)
        expected = [i for i in known if i > pivot]
        caps.id_filter = all(i > pivot for i in ids) and (bool(ids) or not expected)
    if caps.id_sort:
        descending = await _try(api, sort=ID_FIELD, ascending=False, limit=SAMPLE)
        if descending is not None:
            ids = _ids(descending)
            caps.id_sort_desc = ids == sorted(ids, reverse=True)
    running = await _try(api, query=f'Status -eq "{int(JobStatus.IN_PROCESS)}"', limit=SAMPLE)
    if running is not None:
        caps.status_filter = all(
            isinstance(row, dict) and _status(row.get("Status")) == JobStatus.IN_PROCESS
            for row in running
        )
    if need_dates or caps.mode != "keyset":
        by_start = await _try(api, sort=START_FIELD, ascending=True, limit=SAMPLE)
        if by_start is not None:
            starts = _starts(by_start)
            caps.start_sort = starts == sorted(starts)
        caps.date_format = await _date_format(api, sample)
    return caps


def _status(value: object) -> JobStatus | None:
    try:
        return JobStatus.parse(value)
    except ValueError:
        return None
