"""Pages from Jinja2 templates (autoescaped), with the dashboard's security headers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobhooks.escapes import escape_controls

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "environment", "page", "redirect", "secure"]

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def when(moment: float | None) -> Markup:
    """A UTC time as ``<time>``; the page's script shows it in the viewer's time zone and
    keeps UTC on hover."""
    if moment is None:
        return Markup('<span class="muted">—</span>')
    stamp = datetime.fromtimestamp(moment, UTC)
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    text = stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(iso, text)


def age(seconds: float | None) -> str:
    """A span of time for people: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def duration(seconds: float | None) -> str:
    """How long an attempt took: ``850 µs``, ``12 ms``, ``3.4 s``."""
    if seconds is None:
        return "—"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 60 else age(seconds)


def percent(rate: float | None) -> str:
    """``12.5 %``; a dash when there is nothing to divide."""
    if rate is None or math.isnan(rate):
        return "—"
    return f"{rate * 100:.1f} %" if rate < 0.995 or rate == 1 else f"{rate * 100:.2f} %"


def number(value: int | float | None) -> str:
    """Thousands separated by a thin space: ``1 234 567``."""
    if value is None:
        return "—"
    return f"{value:,}".replace(",", "\u202f")


def short(text: str | None, limit: int = 120) -> str:
    """The first line of ``text``, cut to ``limit`` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def css_class(text: str | None) -> str:
    """A name made safe for a class attribute: ``Failure`` -> ``failure``."""
    return "".join(ch for ch in (text or "").lower() if ch.isalnum() or ch == "-")


def verbatim(value: str | None) -> Markup:
    """A form field's value as it is (HTML-escaped, no character written as an escape): a
    field holds the text a filter is sent again with, and a field's text cannot act on the
    page around it."""
    return escape(value or "")


def _shown(value: object) -> object:
    """Every value a template prints: text from outside with the characters that would act
    on the page's text around it (a bidi override reversing the rest of a line, control
    characters) written as escapes; what the templates made as markup passes as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return escape_controls(value, keep="\n\t\r")
    return value


@cache
def environment() -> jinja2.Environment:
    """The templates, autoescaped whatever their names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobhooks.ui", "templates"),
        autoescape=True,
        finalize=_shown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        age=age,
        duration=duration,
        percent=percent,
        number=number,
        short=short,
        css=css_class,
        verbatim=verbatim,
    )
    env.globals["escape"] = escape
    return env


def secure(response: Response) -> Response:
    """Add the security headers to a response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def page(template: str, context: dict[str, Any], status: int = 200) -> Response:
    """A rendered template as an HTML response with the security headers."""
    html = environment().get_template(template).render(context)
    return secure(HTMLResponse(html, status_code=status))


def redirect(url: str) -> Response:
    """A 303 See Other (a GET after a POST) with the security headers."""
    return secure(RedirectResponse(url, status_code=303))
