"""The operator dashboard at ``/ui/``: server-rendered pages, a session per sign-in.

Every page works without JavaScript; ``static/app.js`` only refreshes the
overview, shows times in the viewer's time zone and keeps the detail page
current while its runs are open. :func:`install` mounts it on the web app.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from jobhooks.errors import StoreError
from jobhooks.ui import signin
from jobhooks.ui.common import Refused, SignInRequired, context
from jobhooks.ui.pages import catalog, completions, handlers, overview, reference, runs
from jobhooks.ui.render import STATIC_DIR, page, redirect, secure
from jobhooks.ui.session import SESSION_COOKIE

__all__ = ["install"]


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = secure(await super().get_response(path, scope))
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: pages under /ui/, assets under /ui/static/."""
    app.mount("/ui/static", _Static(directory=STATIC_DIR), name="ui-static")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        # A person who opens the server's address wants the dashboard.
        return secure(RedirectResponse("/ui/", status_code=307))

    app.include_router(signin.router)
    for pages in (overview, completions, runs, handlers, catalog, reference):
        app.include_router(pages.router)

    @app.exception_handler(SignInRequired)
    async def on_sign_in(request: Request, _exc: SignInRequired) -> Response:
        target = "/ui/"
        if request.method == "GET" and request.url.path != "/ui/overview/live":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = redirect("/ui/login?" + urlencode({"next": target}, quote_via=quote))
        if SESSION_COOKIE in request.cookies:
            response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response

    @app.exception_handler(Refused)
    async def on_refused(request: Request, exc: Refused) -> Response:
        session = await signin.current_session(request)
        values = context(request, session, "", status=exc.status, message=exc.message)
        return page("error.html", values, exc.status)

    async def store_page(request: Request, exc: Exception) -> Response:
        # No session: the store cannot be asked for it.
        message = f"The database cannot be used right now: {exc}."
        return page("error.html", context(request, None, "", status=503, message=message), 503)

    async def http_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        if status == 404:
            message = f"There is no page at {request.url.path}."
        elif status == 405:
            message = f"{request.url.path} does not answer {request.method}."
        else:
            message = str(exc.detail)
        values = context(request, None, "", status=status, message=message)
        return page("error.html", values, status)

    _for_pages(app, StoreError, store_page)
    _for_pages(app, HTTPException, http_page)


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _for_pages(app: FastAPI, kind: type[Exception], answer: Handler) -> None:
    """Answer ``kind`` under /ui with ``answer`` (a page with the dashboard's headers, and
    the ``Allow`` the API's answer would carry), elsewhere as the API does."""
    elsewhere = app.exception_handlers.get(kind)

    async def handle(request: Request, exc: Exception) -> Response:
        api: Response | None = None
        if elsewhere is not None:
            result = elsewhere(request, exc)
            api = await result if inspect.isawaitable(result) else result
        path = request.url.path
        if api is not None and path != "/ui" and not path.startswith("/ui/"):
            return api
        shown = await answer(request, exc)
        if api is not None and "allow" in api.headers:
            shown.headers["Allow"] = api.headers["allow"]
        return shown

    app.add_exception_handler(kind, handle)
