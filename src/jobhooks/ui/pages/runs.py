"""Runs: by status and handler; replaying one."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobhooks.store.records import RunStatus
from jobhooks.ui.common import (
    PAGE_SIZE,
    Refused,
    check_form,
    context,
    local_path,
    registered,
    runtime_of,
)
from jobhooks.ui.render import page, redirect
from jobhooks.ui.signin import SignedIn, refuse_viewers

__all__ = ["router", "with_notice"]

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/runs")
async def runs_page(request: Request, session: SignedIn) -> Response:
    status = request.query_params.get("status") or None
    handler = (request.query_params.get("handler") or "").strip()[:200] or None
    problems: dict[str, str] = {}
    if status is not None and status not in RunStatus.ALL:
        problems["status"] = f"status: expected one of {', '.join(RunStatus.ALL)}"
        status = None
    before = request.query_params.get("before") or None
    if before is not None and len(before) > 36:
        before = None
    names = registered(request)
    result_page = await runtime_of(request).store.reads.runs(
        status, handler, names, PAGE_SIZE, before
    )
    kept = {"status": status or "", "handler": handler or ""}
    kept = {name: value for name, value in kept.items() if value}
    next_url = None
    if result_page.next:
        next_url = "/ui/runs?" + urlencode({**kept, "before": result_page.next})
    return page(
        "runs.html",
        context(
            request,
            session,
            "runs",
            page=result_page,
            status=status or "",
            handler=handler or "",
            statuses=RunStatus.ALL,
            handlers=names,
            problems=problems,
            first_invalid="status" if problems else "",
            next_url=next_url,
            paged=before is not None,
            first_url="/ui/runs?" + urlencode(kept),
            back=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        ),
    )


def with_notice(path: str, notice: str) -> str:
    """``path`` with its ``notice`` parameter set to ``notice``."""
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qs(parts.query).items() if k != "notice"]
    pairs = [(k, v[0]) for k, v in query] + [("notice", notice)]
    return f"{parts.path}?{urlencode(pairs)}"


@router.post("/runs/{run_id}/replay")
async def replay_run(request: Request, session: SignedIn, run_id: str) -> Response:
    form = await check_form(request, session)
    refuse_viewers(session)
    runtime = runtime_of(request)
    previous = await runtime.store.replay(run_id) if len(run_id) <= 36 else None
    if previous is None:
        raise Refused(404, f"There is no handler run {run_id[:40]!r}.")
    back = local_path(form.get("back"), "/ui/runs")
    if previous in RunStatus.NOT_REPLAYABLE:
        return redirect(with_notice(back, "busy"))
    runtime.poke_worker()
    return redirect(with_notice(back, "replayed"))
