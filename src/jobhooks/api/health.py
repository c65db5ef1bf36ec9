"""``/healthz`` (the process answers), ``/readyz`` (it can store), ``/metrics``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from jobhooks.api.operator import registration_problems, runtime_of

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The process can store completions",
    responses={
        503: {"description": "The process cannot store completions now; `database` says why"}
    },
)
async def readyz(request: Request) -> Response:
    runtime = runtime_of(request)
    problem = runtime.store.unready()
    worker = runtime.worker
    body: dict[str, Any] = {
        "status": "ok" if problem is None else "unavailable",
        "database": "ok" if problem is None else problem,
        "worker": None if worker is None else {"id": worker.id, "busy": worker.busy},
        "config": {
            "handlers": len(runtime.live.registry),
            "last_reload_applied": runtime.live.last_reload.applied,
        },
        # A registration with problems never takes the API out of service: it is listed.
        "registrations": registration_problems(runtime.live.registry),
        "uptime": time.time() - runtime.metrics.started,
    }
    poller = runtime.poller
    if poller is not None:
        # The platform's state is reported, never a reason to take the API out of service.
        body["poll"] = poller.status()
    return JSONResponse(body, status_code=200 if problem is None else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
    },
)
async def metrics(request: Request) -> Response:
    registry = runtime_of(request).metrics.registry
    loop = asyncio.get_running_loop()
    payload = await loop.run_in_executor(None, generate_latest, registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
