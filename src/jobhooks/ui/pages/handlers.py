"""Handlers: each registration's runs and health; replaying a handler's dead runs."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobhooks.ui.common import check_form, configured_names, context, runtime_of
from jobhooks.ui.render import page, redirect
from jobhooks.ui.signin import SignedIn, refuse_viewers

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/handlers")
async def handlers_page(request: Request, session: SignedIn) -> Response:
    runtime = runtime_of(request)
    registrations = list(runtime.live.registry)
    health = await runtime.store.reads.handlers([h.name for h in registrations])
    by_name = {item.name: item for item in health}
    names = {**await runtime.store.reads.job_type_names(), **configured_names(request)}
    handlers: list[dict[str, Any]] = []
    for handler in registrations:
        job_types = None
        if not handler.runs_for_all:
            job_types = [
                {"id": str(guid), "name": names.get(str(guid))} for guid in handler.job_types or ()
            ]
        item = by_name[handler.name]
        handlers.append(
            {
                "registration": handler,
                "job_types": job_types,
                **{field.name: getattr(item, field.name) for field in dataclasses.fields(item)},
            }
        )
    names_registered = {h.name for h in registrations}
    others = [item for item in health if item.name not in names_registered]
    return page(
        "handlers.html",
        context(
            request,
            session,
            "handlers",
            handlers=handlers,
            others=others,
            reload=runtime.live.last_reload,
            config_path=str(runtime.live.path) if runtime.live.path else None,
        ),
    )


@router.get("/handlers/{name}/replay-dead")
async def replay_dead_confirm(request: Request, session: SignedIn, name: str) -> Response:
    refuse_viewers(session)
    count = await runtime_of(request).store.reads.dead_runs(name[:200])
    return page(
        "replay_dead.html", context(request, session, "handlers", handler=name, count=count)
    )


@router.post("/handlers/{name}/replay-dead")
async def replay_dead(request: Request, session: SignedIn, name: str) -> Response:
    await check_form(request, session)
    refuse_viewers(session)
    runtime = runtime_of(request)
    await runtime.store.replay_dead(name[:200])
    runtime.poke_worker()
    return redirect("/ui/runs?" + urlencode({"handler": name, "notice": "replayed-dead"}))
