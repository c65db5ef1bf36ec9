"""The host names a server answers to (``[server] allowed_hosts``).

A page on another site can make a browser send requests to this server under the
site's own name, once that name resolves to this server's address (DNS rebinding):
the browser then reads the answers as the site's. Only a name can be rebound, so an
address (``127.0.0.1``, ``[::1]``, ``10.0.0.5``) and ``localhost`` are always answered;
a name is answered only when it is listed. With no list, every name is (the default).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection

from jobhooks.api.guard import ASGIApp, Receive, Scope, Send, answer_problem

__all__ = ["ALWAYS", "HostCheck", "host_name", "refused_host"]

ALWAYS = frozenset({"localhost"})
"""Names answered whatever the list says: they name this machine to itself."""

_PORT = re.compile(r"(:[0-9]*)?", re.ASCII)
"""What may follow a name or a bracketed address in ``Host``: a port, or nothing."""

_HEALTH = "/healthz"
"""Answered under any name: a probe's address is the balancer's to choose, and the answer
says nothing."""


def host_name(host: str) -> str:
    """The name in a ``Host`` header's value: without its port or brackets, in lower case,
    without a final dot. A value whose port is no number, or whose brackets hold no address
    or are followed by anything but a port, is returned whole (it names nothing answered)."""
    host = host.strip().lower()
    if host.startswith("["):
        address, _, port = host[1:].partition("]")
        return address if _is_address(address) and _PORT.fullmatch(port) else host
    if host.count(":") == 1:
        name, colon, port = host.partition(":")
        host = name if _PORT.fullmatch(colon + port) else host
    return host.removesuffix(".")


def refused_host(host: str, allowed: Collection[str]) -> bool:
    """True when ``host`` (a ``Host`` header's value) names this server by a name that is not
    in ``allowed``; an empty ``allowed`` refuses nothing."""
    if not allowed:
        return False
    name = host_name(host)
    return name not in allowed and name not in ALWAYS and not _is_address(name)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: answers 400 to a request sent under a name the server does not
    answer to; ``allowed`` is read at each request (a reload changes it)."""

    def __init__(self, app: ASGIApp, allowed: Callable[[], Collection[str]]) -> None:
        self.app = app
        self.allowed = allowed

    def __getattr__(self, name: str) -> object:
        # The wrapped app's attributes (state, openapi, runtime, ...) stay reachable.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self.allowed()
        if allowed and scope["type"] == "http" and scope["path"] != _HEALTH:
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    if refused_host(host, allowed):
                        shown = host_name(host)[:100]
                        detail = (
                            f"this server does not answer to the name {shown!r}; "
                            "use one of the names in its [server] allowed_hosts"
                        )
                        await answer_problem(send, 400, detail, [])
                        return
        await self.app(scope, receive, send)
