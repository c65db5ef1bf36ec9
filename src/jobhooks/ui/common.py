"""What every dashboard page shares: its context, the errors it answers with, its forms."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request

from jobhooks import __version__
from jobhooks.service.runtime import Runtime
from jobhooks.ui.session import Session, same_token

__all__ = [
    "MAX_FORM",
    "NAV",
    "PAGE_SIZE",
    "Refused",
    "SignInRequired",
    "check_form",
    "check_origin",
    "configured_names",
    "context",
    "local_path",
    "read_form",
    "registered",
    "runtime_of",
]

MAX_FORM = 16 * 1024
MAX_FIELDS = 50
"""More fields than any form of the dashboard has: such a form is refused (413)."""
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


def runtime_of(request: Request) -> Runtime:
    """The runtime the app serves."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def registered(request: Request) -> list[str]:
    """The names of the registrations in force."""
    return [handler.name for handler in runtime_of(request).live.registry]


def configured_names(request: Request) -> dict[str, str]:
    """The configuration's ``[job_types]``, GUID -> name."""
    return {str(guid): name for name, guid in runtime_of(request).live.config.job_types.items()}


def context(
    request: Request, session: Session | None, active: str, **values: Any
) -> dict[str, Any]:
    """What every page's template gets, plus ``values``."""
    return {
        "request_path": request.url.path,
        "session": session,
        "csrf": session.csrf if session else "",
        "nav": NAV,
        "active": active,
        "version": __version__,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        # Signed-in pages carry a banner while any registration has problems.
        "registration_problems": runtime_of(request).live.registry.problems if session else (),
        **values,
    }


def local_path(value: str | None, default: str) -> str:
    """``value`` if it is a path inside the dashboard (never another host), else ``default``."""
    if not value or not value.startswith("/ui/") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return default
    return value


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (the first value of each); 413 beyond :data:`MAX_FORM` bytes."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM:
        raise Refused(413, "The form is too large.")
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Refused(413, "The form is too large.")
    try:
        fields = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except ValueError:  # more fields than any form of the dashboard has
        raise Refused(413, "The form has too many fields.") from None
    return {name: values[0] for name, values in fields.items()}


def check_origin(request: Request) -> None:
    """Refuse a form sent from another site: its ``Origin`` is not the ``Host`` it was sent
    to. (Behind a reverse proxy the proxy must pass the browser's ``Host`` on.)"""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin and origin != "null" and not _same_host(origin, host):
        raise Refused(
            403,
            f"This form was sent from another site ({origin[:200]}) than the one it was sent "
            f"to ({(host or 'no Host')[:200]}); it was refused. Behind a reverse proxy, have it "
            "pass the Host header on (nginx: proxy_set_header Host $host).",
        )


def _same_host(origin: str, host: str | None) -> bool:
    """True when ``origin`` names ``host``; a ``Host`` without a port names the host on any
    port (a proxy passing nginx's ``$host`` leaves out the port the browser used)."""
    if host is None:
        return False
    try:
        sent, to = urlsplit(origin), urlsplit(f"//{host}")
        if sent.netloc == host:
            return True
        return to.port is None and bool(to.hostname) and sent.hostname == to.hostname
    except ValueError:  # a port that is no number
        return False


async def check_form(request: Request, session: Session) -> dict[str, str]:
    """A form of a signed-in page, checked for its origin and CSRF token."""
    check_origin(request)
    form = await read_form(request)
    if not same_token(session.csrf, form.get("csrf")):
        raise Refused(403, "The form's CSRF token is missing or wrong; reload the page and retry.")
    return form
