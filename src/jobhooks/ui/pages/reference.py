"""The API reference page: the OpenAPI document as a page of the dashboard.

Served by jobhooks itself under the dashboard's content security policy, so
it works in a closed network (the usual interactive pages load their scripts
from a CDN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobhooks.ui.common import context
from jobhooks.ui.render import page
from jobhooks.ui.signin import SignedIn

__all__ = ["Field", "Operation", "operations", "router", "schema_fields"]

router = APIRouter(prefix="/ui", include_in_schema=False)
SCHEMAS = ("CompletionReport", "CheckinAnswer", "Problem")


@dataclass(frozen=True, slots=True)
class Field:
    """A parameter or a property of a body."""

    name: str
    where: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path."""

    method: str
    path: str
    summary: str
    description: str
    tag: str
    parameters: list[Field]
    body: str | None
    """The name of the request body's schema."""
    responses: list[tuple[str, str, str]]
    """(status, description, content type)."""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return "one of " + ", ".join(str(value) for value in schema["enum"])
    if "anyOf" in schema:
        parts = [_type(part) for part in schema["anyOf"]]
        return " or ".join(part for part in parts if part != "null") + (
            " (or null)" if "null" in parts else ""
        )
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    detail = schema.get("format")
    bounds = [
        f"{key} {schema[key]}" for key in ("minimum", "maximum", "maxLength") if key in schema
    ]
    extra = ", ".join(([detail] if detail else []) + bounds)
    return f"{kind} ({extra})" if extra else kind


def schema_fields(document: dict[str, Any], name: str) -> list[Field]:
    """The properties of a component schema."""
    schema = document.get("components", {}).get("schemas", {}).get(name, {})
    required = set(schema.get("required", ()))
    return [
        Field(key, "body", _type(value), key in required, str(value.get("description", "")))
        for key, value in schema.get("properties", {}).items()
    ]


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI document, in its order."""
    found = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            parameters = [
                Field(
                    str(parameter["name"]),
                    str(parameter.get("in", "")),
                    _type(parameter.get("schema", {})),
                    bool(parameter.get("required")),
                    str(parameter.get("description", "")),
                )
                for parameter in operation.get("parameters", [])
            ]
            body = None
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                body = _type(media.get("schema", {}))
            responses = [
                (code, str(response.get("description", "")), ", ".join(response.get("content", {})))
                for code, response in operation.get("responses", {}).items()
            ]
            found.append(
                Operation(
                    method.upper(),
                    path,
                    str(operation.get("summary", "")),
                    str(operation.get("description", "")),
                    str((operation.get("tags") or ["other"])[0]),
                    parameters,
                    body,
                    sorted(responses),
                )
            )
    return found


@router.get("/api")
async def api_reference(request: Request, session: SignedIn) -> Response:
    document = request.app.openapi()
    return page(
        "api.html",
        context(
            request,
            session,
            "",
            operations=operations(document),
            schemas=[(name, schema_fields(document, name)) for name in SCHEMAS],
        ),
    )
