"""Masking the secret parts of a URL (a webhook's, an Apprise service's) wherever they may
be echoed: in a receiver's answer, in a library's log."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

__all__ = ["redaction", "url_parts"]

_MIN_REDACTED = 4
"""Shorter parts of the URL or header values are not masked in a receiver's answer: too
common to be secret, and masking them would garble the text."""


def url_parts(text: str) -> set[str]:
    """Each part of the URL ``text`` but its scheme, host and port, raw and decoded: the
    whole URL, the user info, user and password (also as a Basic header's base64), the
    path and each segment, the query and each name and value (also encoded again), the
    fragment; and each word of those (services split lists at commas and spaces). Any
    scheme: ``json://``, ``ntfy://`` and Apprise's other URLs too."""
    url = urlsplit(text)
    userinfo, at, _ = url.netloc.rpartition("@")
    user, _, password = (unquote(part) for part in userinfo.partition(":"))
    parts = {text, userinfo, user, password, url.path, url.query, url.fragment}
    if at:
        parts.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    for segment in (*url.path.split("/"), url.fragment):
        parts.update((segment, unquote(segment)))
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        parts.update((name, value, quote(value, safe=""), quote_plus(value)))
    return parts | {word for part in parts for word in re.split(r"[\s,]+", part)}


def redaction(parts: Iterable[str]) -> re.Pattern[str]:
    """A pattern matching each of ``parts`` (those of at least ``_MIN_REDACTED``
    characters besides slashes) in any case, also with ``/`` escaped as JSON may write
    it, the longest first."""
    kept = {part for part in parts if len(part.strip("/")) >= _MIN_REDACTED}
    kept |= {part.replace("/", "\\/") for part in kept if "/" in part}
    ordered = sorted(kept, key=len, reverse=True)
    return re.compile("|".join(re.escape(part) for part in ordered) or "(?!)", re.IGNORECASE)
