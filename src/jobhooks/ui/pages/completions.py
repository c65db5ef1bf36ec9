"""Completions: the filtered list, and one completion with its runs and attempts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobhooks.sdk.enums import JobResult
from jobhooks.store.reads import SCAN_WINDOW, CompletionFilter
from jobhooks.store.records import RunStatus
from jobhooks.ui.common import PAGE_SIZE, Refused, context, runtime_of
from jobhooks.ui.render import page
from jobhooks.ui.signin import SignedIn

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
FILTERS = ("agent", "machine", "job_type", "job", "result", "since", "until")
FORM_ORDER = ("agent", "machine", "job_type", "result", "since", "until")
"""The filters' fields as the form shows them: the first in error gets the focus."""


def _time(value: str, name: str, label: str, problems: dict[str, str]) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems[name] = f"{label}: expected a date and time such as 2026-11-22T10:00"
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _filter(params: Mapping[str, str]) -> tuple[CompletionFilter, dict[str, str], dict[str, str]]:
    """The filter in force, the form's values, and what is wrong with them (field -> why).

    A value that parses is shown back as the filter uses it (a GUID in its usual spelling,
    a result by its name), so the form always says what the list is filtered by."""
    problems: dict[str, str] = {}
    raw = {name: params.get(name, "").strip()[:512] for name in FILTERS}

    def guid(name: str, label: str) -> uuid.UUID | None:
        if not raw[name]:
            return None
        try:
            value = uuid.UUID(raw[name])
        except ValueError:
            problems[name] = f"{label}: not a GUID"
            return None
        raw[name] = str(value)
        return value

    result = None
    if raw["result"]:
        try:
            result = JobResult.parse(raw["result"])
        except ValueError as exc:
            problems["result"] = f"result: {exc}"
        else:
            raw["result"] = result.display
    where = CompletionFilter(
        agent_id=guid("agent", "agent"),
        job_id=guid("job", "job"),
        job_type_id=guid("job_type", "job type"),
        client_machine=raw["machine"] or None,
        result=result,
        since=_time(raw["since"], "since", "from", problems),
        until=_time(raw["until"], "until", "to", problems),
    )
    return where, raw, problems


@router.get("/completions")
async def completions(request: Request, session: SignedIn) -> Response:
    where, raw, problems = _filter(request.query_params)
    before = request.query_params.get("before") or None
    if before is not None and len(before) > 36:
        before = None
    reads = runtime_of(request).store.reads
    result_page = await reads.completions(where, PAGE_SIZE, before)
    choices = await reads.filter_choices()
    kept = {name: value for name, value in raw.items() if value}
    next_url = None
    if result_page.next:
        next_url = "/ui/completions?" + urlencode({**kept, "before": result_page.next})
    return page(
        "completions.html",
        context(
            request,
            session,
            "completions",
            page=result_page,
            filters=raw,
            filtered=bool(kept),
            problems=problems,
            first_invalid=next((name for name in FORM_ORDER if name in problems), ""),
            choices=choices,
            results=[member.display for member in JobResult],
            next_url=next_url,
            paged=before is not None,
            first_url="/ui/completions?" + urlencode(kept),
            scan_window=SCAN_WINDOW,
        ),
    )


@router.get("/completions/{completion_id}")
async def completion(request: Request, session: SignedIn, completion_id: str) -> Response:
    detail = None
    if len(completion_id) <= 36:
        detail = await runtime_of(request).store.reads.completion(completion_id)
    if detail is None:
        raise Refused(404, f"There is no completion {completion_id[:40]!r}.")
    busy = (RunStatus.COLLECTING, RunStatus.PENDING, RunStatus.RUNNING)
    open_runs = any(run.status in busy for run in detail.handler_runs)
    # A digest's members are listed with what each was, not as bare ids.
    in_digests = sorted({member for run in detail.handler_runs for member in run.group})
    members = await runtime_of(request).store.reads.completions_by_id(in_digests)
    return page(
        "completion.html",
        context(request, session, "completions", c=detail, open_runs=open_runs, members=members),
    )
