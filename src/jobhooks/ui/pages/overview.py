"""The overview: completions over time, failure rates, runs, backlog, handlers."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobhooks.store.reads import RANGES
from jobhooks.ui.chart import stacked_bars
from jobhooks.ui.common import configured_names, context, registered, runtime_of
from jobhooks.ui.render import page, redirect
from jobhooks.ui.signin import SignedIn

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
CHOICES = [("1h", "Last hour"), ("24h", "Last day"), ("7d", "Last week")]


async def _data(request: Request) -> dict[str, Any]:
    chosen = request.query_params.get("range", "24h")
    range_key = chosen if chosen in RANGES else "24h"
    overview = await runtime_of(request).store.reads.overview(
        range_key, registered(request), configured_names(request)
    )
    data = {field.name: getattr(overview, field.name) for field in dataclasses.fields(overview)}
    return {**data, "figure": stacked_bars(overview.chart), "range": range_key, "ranges": CHOICES}


@router.get("")
async def root() -> Response:
    return redirect("/ui/")


@router.get("/")
async def overview(request: Request, session: SignedIn) -> Response:
    return page("overview.html", context(request, session, "overview", **await _data(request)))


@router.get("/overview/live")
async def overview_live(request: Request, session: SignedIn) -> Response:
    data = await _data(request)
    return page("_overview_live.html", context(request, session, "overview", **data))
