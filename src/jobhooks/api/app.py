"""The ASGI app: ``create_app(runtime)`` wires the routes to a running :class:`Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from jobhooks import __version__
from jobhooks.api import health, operator
from jobhooks.api.checkin import PATH, CheckinEndpoint, check_in
from jobhooks.api.guard import MAX_BODY, RequestGuard, with_head
from jobhooks.api.hosts import HostCheck
from jobhooks.api.problems import PROBLEM_SCHEMA, ApiProblem, problem_response
from jobhooks.api.schemas import STORABLE, CheckinAnswer, CompletionReport
from jobhooks.errors import StoreError
from jobhooks.intake import MAX_IDEMPOTENCY_KEY
from jobhooks.service.runtime import Runtime

__all__ = ["create_app"]


def _checkin_openapi() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CompletionReport"}}
            },
        },
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_IDEMPOTENCY_KEY,
                    "pattern": "^[ -~]+$",
                },
                "description": "A repeat with the same key from the same agent answers "
                "with the original (printable ASCII).",
            }
        ],
        "responses": {
            "202": {
                "description": "Stored, with one pending run per matching handler",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CheckinAnswer"}}
                },
            },
            "400": {"description": "Malformed body"},
            "401": {"description": "No or unknown token"},
            "403": {"description": "The token belongs to another agent"},
            "413": {"description": f"Body over {MAX_BODY} bytes"},
            "415": {"description": "The body is not JSON"},
            "422": {"description": "Invalid fields; `errors` lists each with why"},
            "503": {"description": "The completion could not be stored; nothing was"},
        },
    }


_ERRORS = {
    "401": "No token, or an unknown or revoked one",
    "403": "The token's role may not do this",
    "404": "No such resource",
    "409": "The run is pending or running; only a finished or failed one can be replayed",
    "413": f"Body over {MAX_BODY} bytes",
    "422": "Invalid parameters; `errors` lists each with why",
    "503": "The database cannot answer now",
}


def _storable(schema: dict[str, Any]) -> None:
    """Free text in a parameter takes anything but a NUL character (see api.guard)."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string" and not {"pattern", "enum", "format"} & set(option):
            option["pattern"] = STORABLE


def _document_problems(schema: dict[str, Any]) -> None:
    """Describe every error answer as what it is: an ``application/problem+json`` body."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                _storable(parameter.get("schema", {}))
            responses = operation.setdefault("responses", {})
            if path.startswith("/api/v1/"):
                codes = ["401", "403", "422", "503"]
                if "{" in path:
                    codes.append("404")
                if path.endswith("/replay"):
                    codes.append("409")
                if method == "post":
                    codes.append("413")
                for code in codes:
                    responses.setdefault(code, {"description": _ERRORS[code]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and path != "/readyz":
                    response["content"] = problem
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


async def _checkin_route(request: Request) -> Response:
    # Reached only when the app is served without its CheckinEndpoint in front.
    status, body = await check_in(
        operator.runtime_of(request),
        request.headers.get("authorization"),
        request.headers.get("idempotency-key"),
        await request.body(),
    )
    kind = "application/json" if status < 400 else "application/problem+json"
    return Response(body, status_code=status, media_type=kind)


def create_app(runtime: Runtime, extensions: Sequence[Callable[[FastAPI], None]] = ()) -> HostCheck:
    """The API for a :class:`~jobhooks.service.runtime.Runtime`; its lifespan starts and stops
    it. Each of ``extensions`` adds to the app (the dashboard mounts its pages so).

    The check-in is answered by a bare ASGI endpoint in front of FastAPI;
    everything else (and the OpenAPI document) by FastAPI. In front of both, requests sent
    under a name not in ``[server] allowed_hosts`` are refused.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="jobhooks",
        version=__version__,
        description="Check-in API for orchestrator job completions, and operator endpoints.",
        lifespan=lifespan,
        # The interactive pages would load their scripts from a CDN; the dashboard
        # shows this document instead (/ui/api), from this server alone.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.add_api_route(
        PATH,
        _checkin_route,
        methods=["POST"],
        status_code=202,
        summary="Report a completed orchestrator job",
        tags=["check-in"],
        openapi_extra=_checkin_openapi(),
        response_class=Response,
    )
    app.include_router(operator.router)
    app.include_router(health.router)

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CompletionReport, CheckinAnswer):
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            _document_problems(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ApiProblem)
    async def on_problem(_request: Request, exc: ApiProblem) -> Response:
        return problem_response(exc.status, exc.detail, exc.errors)

    @app.exception_handler(StoreError)
    async def on_store(_request: Request, exc: StoreError) -> Response:
        return problem_response(503, str(exc))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in error["loc"][1:]) or "request",
                "message": error["msg"],
            }
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, detail, errors)

    @app.exception_handler(HTTPException)
    async def on_http(_request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers) if exc.headers else None
        if headers and "Allow" in headers:
            headers["Allow"] = with_head(headers["Allow"])
        return problem_response(exc.status_code, str(exc.detail), None, headers)

    # Last, so an extension sees the API's handlers (and may defer to them).
    for extend in extensions:
        extend(app)
    endpoint = CheckinEndpoint(runtime, RequestGuard(app))
    return HostCheck(endpoint, lambda: runtime.live.config.server.allowed_hosts)
