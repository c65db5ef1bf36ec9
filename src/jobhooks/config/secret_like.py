"""Whether a value read from the platform's configuration is a secret: by its name or by
what it looks like. Used when importing, so that no secret is written in clear."""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["looks_secret"]

# A false positive only asks for one more environment variable; a false negative writes a
# secret in clear. So the patterns are broad: "pass" also matches PassThrough.
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|key(?!factor)|credential|auth(?!ors?\b)|conn\w*str|cookie|salt|"
    r"bearer|hmac|dsn|hook|shared\W?access|code|(?<![a-z])pin(?![a-z])",
    re.I,
)
_URL_NAME = re.compile(r"ur[il]|endpoint", re.I)
# Connection-string pairs, PEM blocks, URL userinfo, secret query parameters, webhook
# hosts whose path is the secret, and well-known token shapes; bounded, so never slow.
_SECRET_VALUE = re.compile(
    r"(?:\A|;)\s*(?:passw\w{0,6}|pwd|[\w ]{0,40}?(?:key|secret|token|signature))\s*=\s*[^;\s]"
    r"|\A\s*(?:bearer|basic|negotiate|ntlm|digest|token)\s+\S"
    r"|-----BEGIN [A-Z0-9 ]+-----"
    r"|\b[a-z][a-z0-9+.-]*://[^/\s?#@]+@"
    r"|[?&#][^=&#\s]{0,40}?(?:key|token|sig|secret|pass|pwd|code|auth|credential)"
    r"[^=&#\s]{0,40}=[^&#\s]"
    r"|hooks\.slack\.com/|(?:outlook\.office(?:365)?|webhook\.office)\.com/webhook"
    r"|discord(?:app)?\.com/api/webhooks/|api\.telegram\.org/bot|/hooks/"
    r"|\beyJ[\w-]{8,}\.[\w-]{8,}\.|\bxox[a-z]-|\bgh[pousr]_\w{20}|\bAKIA[0-9A-Z]{16}",
    re.I,
)


def _url_with_query(value: str) -> bool:
    """Any URL with a query: a key there is as often named ``k`` or ``s`` as ``key``."""
    try:
        parts = urllib.parse.urlsplit(value.strip())
    except ValueError:
        return True
    return bool(parts.scheme and parts.netloc and parts.query)


def _url_with_path(value: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(value.strip())
    except ValueError:
        return True
    return bool(parts.scheme and parts.netloc and (parts.path.strip("/") or parts.query))


def looks_secret(path: str, value: str) -> bool:
    """True when a property (``path`` names it and its containers) holds a secret: by its
    name, by what its value looks like (a URL with a query among them), or as a URL
    property whose URL has a path."""
    if not value or value.startswith(("env:", "file:")) or value.lower() in ("true", "false"):
        return False
    return bool(
        _SECRET_NAME.search(path)
        or _SECRET_VALUE.search(value)
        or _url_with_query(value)
        or (_URL_NAME.search(path) and _url_with_path(value))
    )
