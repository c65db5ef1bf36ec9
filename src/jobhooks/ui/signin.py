"""Signing in and out of the dashboard, and the session every page checks."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from jobhooks import __version__
from jobhooks.ui.common import (
    Refused,
    SignInRequired,
    check_form,
    check_origin,
    local_path,
    read_form,
    runtime_of,
)
from jobhooks.ui.render import page, redirect
from jobhooks.ui.session import (
    KEY_NAME,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    Signer,
)

__all__ = ["SignedIn", "current_session", "router", "signed_in"]

logger = logging.getLogger("jobhooks.ui")

router = APIRouter(prefix="/ui", include_in_schema=False)


async def _signer(request: Request) -> Signer:
    state = request.app.state
    signer: Signer | None = getattr(state, "ui_signer", None)
    if signer is None:
        signer = state.ui_signer = Signer(await runtime_of(request).store.signing_key(KEY_NAME))
    return signer


async def current_session(request: Request) -> Session | None:
    """The request's session if its cookie is good, it is open, and its token still valid."""
    signer = await _signer(request)
    session = signer.session(request.cookies.get(SESSION_COOKIE), time.time())
    if session is None:
        return None
    runtime = runtime_of(request)
    if not await runtime.store.sessions.active(session.id, session.token_id):
        return None
    info = await runtime.tokens.lookup_id(session.token_id)
    if info is None or info.role != session.role:
        return None
    return session


async def signed_in(request: Request) -> Session:
    """The request's session; raises :class:`SignInRequired` without a valid one."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


def _login_page(
    request: Request, signer: Signer, error: str | None = None, status: int = 200
) -> Response:
    cookie, csrf = signer.new_login(time.time())
    next_path = local_path(request.query_params.get("next"), "/ui/")
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
    if await current_session(request) is not None:
        return redirect(local_path(request.query_params.get("next"), "/ui/"))
    return _login_page(request, await _signer(request))


@router.post("/login")
async def login(request: Request) -> Response:
    check_origin(request)
    signer = await _signer(request)
    form = await read_form(request)
    now = time.time()
    if not signer.check_login(request.cookies.get(LOGIN_COOKIE), form.get("csrf"), now):
        return _login_page(
            request, signer, "The sign-in form had expired or was not ours; try again.", 403
        )
    token = form.get("token", "").strip()
    runtime = runtime_of(request)
    info = await runtime.tokens.lookup(token) if 0 < len(token) <= 512 else None
    if info is None:
        if not token:
            return _login_page(request, signer, "Paste a token to sign in.", 400)
        logger.warning(
            "dashboard sign-in refused from %s: an unknown or revoked token",
            request.client.host if request.client else "an unknown address",
        )
        message = "That token is unknown or revoked. Paste an admin or viewer token."
        return _login_page(request, signer, message, 403)
    if info.role not in ("admin", "viewer"):
        logger.warning("dashboard sign-in refused: token %s is for an %s", info.id, info.role)
        return _login_page(
            request,
            signer,
            f"That is an {info.role} token; the dashboard takes an admin or a viewer token "
            "(jobhooks token create --viewer).",
            403,
        )
    session_id = secrets.token_urlsafe(16)
    await runtime.store.sessions.start(session_id, info.id, now + SESSION_SECONDS)
    response = redirect(local_path(form.get("next"), "/ui/"))
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
    await check_form(request, session)
    await runtime_of(request).store.sessions.end(session.id)
    response = redirect("/ui/login?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


def refuse_viewers(session: Session) -> None:
    """Raise 403 unless the session may change things (an admin's)."""
    if not session.can_replay:
        raise Refused(403, "A viewer token reads but cannot replay; sign in with an admin token.")
