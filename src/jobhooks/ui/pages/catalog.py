"""The catalog pages: job types and agents."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobhooks.store import catalog
from jobhooks.ui.common import PAGE_SIZE, configured_names, context, runtime_of
from jobhooks.ui.render import page
from jobhooks.ui.signin import SignedIn

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/job-types")
async def job_types_page(request: Request, session: SignedIn) -> Response:
    cursor = request.query_params.get("after") or ""
    try:
        after = catalog.page_position(cursor) if cursor else None
    except ValueError:
        after = None  # not a cursor made here: the first page
    result = await runtime_of(request).store.reads.job_types(
        PAGE_SIZE, after, configured_names(request)
    )
    next_url = "/ui/job-types?" + urlencode({"after": result.next}) if result.next else None
    return page(
        "job_types.html",
        context(
            request,
            session,
            "job-types",
            catalog=result.items,
            next_url=next_url,
            paged=after is not None,
            first_url="/ui/job-types",
        ),
    )


@router.get("/agents")
async def agents_page(request: Request, session: SignedIn) -> Response:
    listed, total = await runtime_of(request).store.reads.agents()
    return page("agents.html", context(request, session, "agents", agents=listed, total=total))
