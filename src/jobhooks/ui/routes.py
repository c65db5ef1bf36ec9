"""The operator dashboard at ``/ui/``: server-rendered pages, a session per sign-in.

Every page works without JavaScript; ``static/app.js`` only refreshes the
overview, shows times in the viewer's time zone and keeps the detail page
current while its runs are open.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from jobhooks import __version__
from jobhooks.sdk.enums import JobResult
from jobhooks.store import dashboard, queries
from jobhooks.store.keys import signing_key
from jobhooks.store.records import RunStatus
from jobhooks.ui.api_reference import operations, schema_fields
from jobhooks.ui.chart import stacked_bars
from jobhooks.ui.render import STATIC_DIR, page, redirect
from jobhooks.ui.session import (
    KEY_NAME,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    Signer,
    same_token,
)

__all__ = ["install"]

router = APIRouter(prefix="/ui", include_in_schema=False)

MAX_FORM = 16 * 1024
PAGE_SIZE = 50
NAV = (
    ("overview", "/ui/", "Overview"),
    ("completions", "/ui/completions", "Completions"),
    ("runs", "/ui/runs", "Runs"),
    ("handlers", "/ui/handlers", "Handlers"),
    ("job-types", "/ui/job-types", "Job types"),
    ("agents", "/ui/agents", "Agents"),
)
NOTICES = {
    "replayed": "The run is pending again; a worker will pick it up.",
    "replayed-dead": "The dead runs are pending again; workers will pick them up.",
    "busy": "That run is pending or running already; it was left as it is.",
}


class SignInRequired(Exception):
    """Raised by a page without a valid session: answered with a redirect to sign in."""


class Refused(Exception):
    """Raised to answer with an error page (403 for a forbidden action, 404, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- sessions ------------------------------------------------------------------


async def _signer(request: Request) -> Signer:
    state = request.app.state
    signer: Signer | None = getattr(state, "ui_signer", None)
    if signer is None:
        key = await state.runtime.store.read(signing_key, KEY_NAME)
        signer = state.ui_signer = Signer(key)
    return signer


async def _session(request: Request) -> Session | None:
    signer = await _signer(request)
    session = signer.session(request.cookies.get(SESSION_COOKIE), time.time())
    if session is None:
        return None
    runtime = request.app.state.runtime
    if not await runtime.store.session_active(session.id, session.token_id):
        return None
    info = await runtime.tokens.lookup_id(session.token_id)
    if info is None or info.role != session.role:
        return None
    return session


async def signed_in(request: Request) -> Session:
    """The request's session; raises :class:`SignInRequired` without a valid one."""
    session = await _session(request)
    if session is None:
        raise SignInRequired
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


def _local_path(value: str | None, default: str) -> str:
    """``value`` if it is a path inside the dashboard (never another host), else ``default``."""
    if not value or not value.startswith("/ui/") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return default
    return value


async def _form(request: Request) -> dict[str, str]:
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM:
        raise Refused(413, "The form is too large.")
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Refused(413, "The form is too large.")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {name: values[0] for name, values in fields.items()}


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(403, "This form was sent from another site; it was refused.")


async def _check_form(request: Request, session: Session) -> dict[str, str]:
    _check_origin(request)
    form = await _form(request)
    if not same_token(session.csrf, form.get("csrf")):
        raise Refused(403, "The form's CSRF token is missing or wrong; reload the page and retry.")
    return form


def _context(
    request: Request, session: Session | None, active: str, **values: Any
) -> dict[str, Any]:
    return {
        "request_path": request.url.path,
        "session": session,
        "csrf": session.csrf if session else "",
        "nav": NAV,
        "active": active,
        "version": __version__,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        **values,
    }


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _registered(request: Request) -> list[str]:
    return [handler.name for handler in _runtime(request).live.registry]


def _config_names(request: Request) -> dict[str, str]:
    return {str(guid): name for name, guid in _runtime(request).live.config.job_types.items()}


# -- sign-in -------------------------------------------------------------------


def _login_page(
    request: Request, signer: Signer, error: str | None = None, status: int = 200
) -> Response:
    cookie, csrf = signer.new_login(time.time())
    next_path = _local_path(request.query_params.get("next"), "/ui/")
    signed_out = request.query_params.get("signed_out") == "1"
    response = page(
        "login.html",
        {
            "csrf": csrf,
            "next": next_path,
            "error": error,
            "signed_out": signed_out and error is None,
            "version": __version__,
        },
        status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=LOGIN_SECONDS,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await _session(request) is not None:
        return redirect(_local_path(request.query_params.get("next"), "/ui/"))
    return _login_page(request, await _signer(request))


@router.post("/login")
async def login(request: Request) -> Response:
    _check_origin(request)
    signer = await _signer(request)
    form = await _form(request)
    now = time.time()
    if not signer.check_login(request.cookies.get(LOGIN_COOKIE), form.get("csrf"), now):
        return _login_page(
            request, signer, "The sign-in form had expired or was not ours; try again.", 403
        )
    token = form.get("token", "").strip()
    info = await _runtime(request).tokens.lookup(token) if 0 < len(token) <= 512 else None
    if info is None:
        message = "That token is unknown or revoked. Paste an admin or viewer token."
        return _login_page(request, signer, message if token else "Paste a token to sign in.")
    if info.role not in ("admin", "viewer"):
        return _login_page(
            request,
            signer,
            f"That is an {info.role} token; the dashboard takes an admin or a viewer token "
            "(jobhooks token create --viewer).",
        )
    session_id = secrets.token_urlsafe(16)
    await _runtime(request).store.start_session(session_id, info.id, now + SESSION_SECONDS)
    response = redirect(_local_path(form.get("next"), "/ui/"))
    response.set_cookie(
        SESSION_COOKIE,
        signer.new_session(info.id, info.role, now, session_id),
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request, session: SignedIn) -> Response:
    await _check_form(request, session)
    await _runtime(request).store.end_session(session.id)
    response = redirect("/ui/login?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


# -- overview ------------------------------------------------------------------


def _range(request: Request) -> str:
    value = request.query_params.get("range", "24h")
    return value if value in dashboard.RANGES else "24h"


async def _overview_data(request: Request) -> dict[str, Any]:
    range_key = _range(request)
    data: dict[str, Any] = await _runtime(request).store.read(
        dashboard.overview, time.time(), range_key, _registered(request), _config_names(request)
    )
    data["figure"] = stacked_bars(data["chart"])
    data["range"] = range_key
    data["ranges"] = [("1h", "Last hour"), ("24h", "Last day"), ("7d", "Last week")]
    return data


@router.get("")
async def root() -> Response:
    return redirect("/ui/")


@router.get("/")
async def overview(request: Request, session: SignedIn) -> Response:
    data = await _overview_data(request)
    return page("overview.html", _context(request, session, "overview", **data))


@router.get("/overview/live")
async def overview_live(request: Request, session: SignedIn) -> Response:
    data = await _overview_data(request)
    return page("_overview_live.html", _context(request, session, "overview", **data))


# -- completions -----------------------------------------------------------------


def _parse_time(value: str, label: str, problems: list[str]) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{label}: expected a date and time such as 2026-11-22T10:00")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _completion_filter(params: Any) -> tuple[queries.CompletionFilter, dict[str, str], list[str]]:
    problems: list[str] = []
    raw = {
        name: params.get(name, "").strip()[:512]
        for name in ("agent", "machine", "job_type", "job", "result", "since", "until")
    }

    def guid(name: str, label: str) -> uuid.UUID | None:
        if not raw[name]:
            return None
        try:
            return uuid.UUID(raw[name])
        except ValueError:
            problems.append(f"{label}: not a GUID")
            return None

    result = None
    if raw["result"]:
        try:
            result = JobResult.parse(raw["result"])
        except ValueError as exc:
            problems.append(f"result: {exc}")
    where = queries.CompletionFilter(
        agent_id=guid("agent", "agent"),
        job_id=guid("job", "job"),
        job_type_id=guid("job_type", "job type"),
        client_machine=raw["machine"] or None,
        result=result,
        since=_parse_time(raw["since"], "from", problems),
        until=_parse_time(raw["until"], "to", problems),
    )
    return where, raw, problems


@router.get("/completions")
async def completions(request: Request, session: SignedIn) -> Response:
    where, raw, problems = _completion_filter(request.query_params)
    before = request.query_params.get("before") or None
    if before is not None and len(before) > 36:
        before = None
    store = _runtime(request).store
    result_page = await store.read(dashboard.list_completions, where, PAGE_SIZE, before)
    choices = await store.read(dashboard.filter_choices)
    kept = {name: value for name, value in raw.items() if value}
    next_url = None
    if result_page.next:
        next_url = "/ui/completions?" + urlencode({**kept, "before": result_page.next})
    return page(
        "completions.html",
        _context(
            request,
            session,
            "completions",
            page=result_page,
            filters=raw,
            filtered=bool(kept),
            problems=problems,
            choices=choices,
            results=[member.display for member in JobResult],
            next_url=next_url,
            paged=before is not None,
            first_url="/ui/completions?" + urlencode(kept),
            scan_window=dashboard.SCAN_WINDOW,
        ),
    )


@router.get("/completions/{completion_id}")
async def completion(request: Request, session: SignedIn, completion_id: str) -> Response:
    detail = None
    if len(completion_id) <= 36:
        detail = await _runtime(request).store.read(queries.completion_detail, completion_id)
    if detail is None:
        raise Refused(404, f"There is no completion {completion_id[:40]!r}.")
    busy = (RunStatus.PENDING, RunStatus.RUNNING)
    open_runs = any(run["status"] in busy for run in detail["handler_runs"])
    return page(
        "completion.html",
        _context(request, session, "completions", c=detail, open_runs=open_runs),
    )


# -- runs ------------------------------------------------------------------------


@router.get("/runs")
async def runs_page(request: Request, session: SignedIn) -> Response:
    status = request.query_params.get("status") or None
    handler = (request.query_params.get("handler") or "").strip()[:200] or None
    problems = []
    if status is not None and status not in RunStatus.ALL:
        problems.append(f"status: expected one of {', '.join(RunStatus.ALL)}")
        status = None
    before = request.query_params.get("before") or None
    if before is not None and len(before) > 36:
        before = None
    store = _runtime(request).store
    registered = _registered(request)
    result_page = await store.read(
        dashboard.list_runs, status, handler, registered, PAGE_SIZE, before
    )
    kept = {"status": status or "", "handler": handler or ""}
    kept = {name: value for name, value in kept.items() if value}
    next_url = None
    if result_page.next:
        next_url = "/ui/runs?" + urlencode({**kept, "before": result_page.next})
    return page(
        "runs.html",
        _context(
            request,
            session,
            "runs",
            page=result_page,
            status=status or "",
            handler=handler or "",
            statuses=RunStatus.ALL,
            handlers=registered,
            problems=problems,
            next_url=next_url,
            paged=before is not None,
            first_url="/ui/runs?" + urlencode(kept),
            back=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        ),
    )


def _with_notice(path: str, notice: str) -> str:
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qs(parts.query).items() if k != "notice"]
    pairs = [(k, v[0]) for k, v in query] + [("notice", notice)]
    return f"{parts.path}?{urlencode(pairs)}"


@router.post("/runs/{run_id}/replay")
async def replay_run(request: Request, session: SignedIn, run_id: str) -> Response:
    form = await _check_form(request, session)
    if not session.can_replay:
        raise Refused(403, "A viewer token reads but cannot replay; sign in with an admin token.")
    runtime = _runtime(request)
    previous = await runtime.store.replay(run_id) if len(run_id) <= 36 else None
    if previous is None:
        raise Refused(404, f"There is no handler run {run_id[:40]!r}.")
    back = _local_path(form.get("back"), "/ui/runs")
    if previous in (RunStatus.PENDING, RunStatus.RUNNING):
        return redirect(_with_notice(back, "busy"))
    runtime.poke_worker()
    return redirect(_with_notice(back, "replayed"))


# -- handlers --------------------------------------------------------------------


async def _job_type_names(request: Request) -> dict[str, str]:
    names: dict[str, str] = await _runtime(request).store.read(dashboard.job_type_names)
    names.update(_config_names(request))
    return names


@router.get("/handlers")
async def handlers_page(request: Request, session: SignedIn) -> Response:
    runtime = _runtime(request)
    registered = list(runtime.live.registry)
    health = await runtime.store.read(
        dashboard.handler_health, [h.name for h in registered], time.time()
    )
    by_name = {item["name"]: item for item in health}
    names = await _job_type_names(request)
    handlers = []
    for handler in registered:
        job_types = None
        if not handler.runs_for_all:
            job_types = [
                {"id": str(guid), "name": names.get(str(guid))} for guid in handler.job_types or ()
            ]
        handlers.append({"registration": handler, "job_types": job_types, **by_name[handler.name]})
    others = [item for item in health if item["name"] not in {h.name for h in registered}]
    return page(
        "handlers.html",
        _context(
            request,
            session,
            "handlers",
            handlers=handlers,
            others=others,
            reload=runtime.live.last_reload,
            config_path=str(runtime.live.path) if runtime.live.path else None,
        ),
    )


async def _dead_count(request: Request, name: str) -> int:
    health = await _runtime(request).store.read(dashboard.handler_health, [name], time.time())
    return int(health[0]["now"][RunStatus.DEAD])


@router.get("/handlers/{name}/replay-dead")
async def replay_dead_confirm(request: Request, session: SignedIn, name: str) -> Response:
    if not session.can_replay:
        raise Refused(403, "A viewer token reads but cannot replay; sign in with an admin token.")
    count = await _dead_count(request, name[:200])
    return page(
        "replay_dead.html", _context(request, session, "handlers", handler=name, count=count)
    )


@router.post("/handlers/{name}/replay-dead")
async def replay_dead(request: Request, session: SignedIn, name: str) -> Response:
    await _check_form(request, session)
    if not session.can_replay:
        raise Refused(403, "A viewer token reads but cannot replay; sign in with an admin token.")
    runtime = _runtime(request)
    await runtime.store.replay_dead(name[:200])
    runtime.poke_worker()
    return redirect("/ui/runs?" + urlencode({"handler": name, "notice": "replayed-dead"}))


# -- catalog -----------------------------------------------------------------------


@router.get("/job-types")
async def job_types_page(request: Request, session: SignedIn) -> Response:
    cursor = request.query_params.get("after") or ""
    try:
        after = queries.job_type_position(cursor) if cursor else None
    except ValueError:
        after = None  # not a cursor made here: the first page
    rows = await _runtime(request).store.read(
        dashboard.job_type_catalog, time.time(), PAGE_SIZE + 1, after, _config_names(request)
    )
    catalog = rows[:PAGE_SIZE]
    next_url = None
    if len(rows) > PAGE_SIZE:
        last = catalog[-1]
        next_url = "/ui/job-types?" + urlencode(
            {"after": queries.job_type_cursor(last["name"], last["id"])}
        )
    return page(
        "job_types.html",
        _context(
            request,
            session,
            "job-types",
            catalog=catalog,
            next_url=next_url,
            paged=after is not None,
            first_url="/ui/job-types",
        ),
    )


@router.get("/api")
async def api_reference(request: Request, session: SignedIn) -> Response:
    document = request.app.openapi()
    names = ("CompletionReport", "CheckinAnswer", "Problem")
    return page(
        "api.html",
        _context(
            request,
            session,
            "",
            operations=operations(document),
            schemas=[(name, schema_fields(document, name)) for name in names],
        ),
    )


@router.get("/agents")
async def agents_page(request: Request, session: SignedIn) -> Response:
    listed, total = await _runtime(request).store.read(dashboard.agents, time.time())
    return page("agents.html", _context(request, session, "agents", agents=listed, total=total))


# -- wiring ------------------------------------------------------------------------


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: pages under /ui/, assets under /ui/static/."""
    app.mount("/ui/static", _Static(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)

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
        session = await _session(request)
        context = _context(request, session, "", status=exc.status, message=exc.message)
        return page("error.html", context, exc.status)
