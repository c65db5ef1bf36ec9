"""What every request passes before it reaches a route: bounded bodies and storable text.

The check-in endpoint reads its own body (see :mod:`jobhooks.api.checkin`);
every other request is checked here, in front of the framework:

* a body is read only up to :data:`MAX_BODY` bytes, counted as it arrives
  (a chunked body has no length to trust), and a larger one is answered 413
  without reading the rest;
* a path or query parameter holding a NUL character, or text that is not
  valid Unicode (also percent-encoded bytes that are not UTF-8), is answered
  with a 4xx naming it, since no database can store or compare it. Only for
  the methods the API serves: any other method is a 405 whatever it carries;
* a header that says one thing (``Authorization``, ``Idempotency-Key``,
  ``Content-Type``, ``Content-Length``) given twice is answered 400: which of the
  two counts would depend on who reads it (a proxy may join them);
* a HEAD request is answered as its GET would be, without the body (the framework's
  routes answer GET alone, and load balancers and monitors probe with HEAD).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from jobhooks.api.problems import problem_body

__all__ = [
    "MAX_BODY",
    "SINGLE_HEADERS",
    "BodyRefused",
    "RequestGuard",
    "answer_problem",
    "check_length",
    "read_body",
    "repeated_header",
    "repeated_problem",
    "unstorable",
    "with_head",
]

MAX_BODY = 64 * 1024
"""The largest body any endpoint takes."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored or compared as text, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode text"
    return None


class BodyRefused(Exception):
    """A request body that is not read to its end: too large, or the client went away
    (``client_gone``: nobody is left to answer)."""

    def __init__(self, status: int, detail: str, *, client_gone: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.client_gone = client_gone


def check_length(declared: bytes | None, limit: int = MAX_BODY) -> None:
    """Refuse a ``Content-Length`` that is not a number or is over ``limit`` (before
    reading anything). Raises :class:`BodyRefused`."""
    if declared is None:
        return
    if not declared.isdigit():
        raise BodyRefused(400, "Content-Length is not a number")
    if int(declared) > limit:
        raise BodyRefused(413, f"the body is {int(declared)} bytes; the limit is {limit}")


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The whole body, counted as it arrives (a chunked body has no length to trust).
    Raises :class:`BodyRefused` past ``limit`` bytes, without reading the rest, or when
    the client goes away first."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyRefused(400, "the client went away before sending the body", client_gone=True)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyRefused(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


SINGLE_HEADERS = (b"authorization", b"idempotency-key", b"content-type", b"content-length")
"""Headers a request may give once."""


def repeated_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first of :data:`SINGLE_HEADERS` that ``headers`` give more than once."""
    seen: set[bytes] = set()
    for name, _value in headers:
        if name in SINGLE_HEADERS:
            if name in seen:
                return name.decode()
            seen.add(name)
    return None


def repeated_problem(name: str) -> str:
    """The refusal of a request that gives header ``name`` twice."""
    return f"the {name} header is given more than once; give it once"


_SERVED = ("GET", "HEAD", "POST")
"""The methods the API answers; the others are refused by routing (405)."""


def with_head(allow: str) -> str:
    """An ``Allow`` header's methods with HEAD beside GET: the guard answers HEAD wherever
    GET is answered, whatever the route lists."""
    methods = [m.strip() for m in allow.split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


_REFUSAL_HEADERS = [
    (b"content-type", b"application/problem+json"),
    # The guard answers before any route, the dashboard's included: its refusals are
    # never framed, sniffed as a page, or kept by a cache, wherever they were asked for.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


async def answer_problem(
    send: Send, status: int, detail: str, errors: list[dict[str, str]]
) -> None:
    """Answer with a problem document, before any route (see :data:`_REFUSAL_HEADERS`)."""
    body = problem_body(status, detail, errors or None)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_REFUSAL_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _without_body(send: Send) -> Send:
    """``send``, leaving every body out (a HEAD's answer: its headers, ``Content-Length``
    included, are the GET's)."""

    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_head


class RequestGuard:
    """ASGI middleware: refuses oversized bodies and unstorable text before the app runs."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    def __getattr__(self, name: str) -> Any:
        # The wrapped framework app's attributes (state, openapi, ...) stay reachable.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            scope, send = {**scope, "method": "GET"}, _without_body(send)
        if scope["method"] in _SERVED:
            problem = self._text_problem(scope)
            if problem is not None:
                await answer_problem(send, *problem)
                return
        repeated = repeated_header(scope["headers"])
        if repeated is not None:
            await answer_problem(send, 400, repeated_problem(repeated), [])
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body at all
            return
        try:
            check_length(declared, self.max_body)
            body = await read_body(receive, self.max_body)
        except BodyRefused as refused:
            if not refused.client_gone:
                await answer_problem(send, refused.status, refused.detail, [])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    def _text_problem(scope: Scope) -> tuple[int, str, list[dict[str, str]]] | None:
        path = scope.get("path", "")
        why = unstorable(path)
        raw = scope.get("raw_path")
        if why is None and raw and b"%" in raw:
            try:
                unquote_to_bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                why = "holds percent-encoded bytes that are not UTF-8 text"
        if why is not None:
            return 404, f"no such resource: the path {why}", [{"field": "path", "message": why}]
        query = scope.get("query_string", b"").decode("utf-8", "surrogateescape")
        errors = []
        for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
            for part in (name, value):
                why = unstorable(part)
                if why is not None:
                    shown = name if unstorable(name) is None else repr(name)[:40]
                    errors.append({"field": shown, "message": why})
                    break
        if errors:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return 422, f"invalid query parameters: {detail}", errors
        return None
