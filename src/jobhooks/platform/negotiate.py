"""Windows authentication (HTTP ``Negotiate``, RFC 4559) as an ``httpx.Auth`` flow.

The platform behind IIS Windows authentication answers 401 with
``WWW-Authenticate: Negotiate``; the flow then exchanges tokens made by
pyspnego (Kerberos through GSSAPI or SSPI, else NTLM) until the server accepts
the request. NTLM authenticates the connection, so every leg goes over the
same kept-alive connection: httpx reads each 401 in full before the next leg,
which returns the connection to the pool for it. pyspnego is the optional extra
``jobhooks[windows-auth]``; it is imported only when this flow is built.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator

import httpx
import spnego
import spnego.exceptions

from jobhooks.errors import PlatformAuthError
from jobhooks.sdk.secret import Secret

__all__ = ["NegotiateAuth"]

_SCHEME = "negotiate"
_MAX_LEGS = 5
"""Kerberos needs one round trip, NTLM two; a server that asks for more is refused."""


class NegotiateAuth(httpx.Auth):
    """``Authorization: Negotiate`` for every request the server challenges.

    With ``username`` and ``password``, NTLM (or Kerberos, when GSSAPI can get
    a ticket for them); without, Kerberos from the service's ticket cache or
    keytab (``KRB5CCNAME``, ``KRB5_CLIENT_KTNAME``). The service principal is
    ``HTTP/<host of the request>``. One instance serves the sync and the async
    client alike: each request gets its own security context.
    """

    def __init__(self, username: str | None = None, password: Secret | None = None) -> None:
        self.username = username
        self._password = password

    def __repr__(self) -> str:
        return f"NegotiateAuth(username={self.username!r})"

    def _context(self, host: str) -> spnego.ContextProxy:
        password = self._password.reveal() if self._password is not None else None
        try:
            return spnego.client(
                self.username, password, hostname=host, service="HTTP", protocol="negotiate"
            )
        except spnego.exceptions.SpnegoError as exc:
            raise self._refused(host, exc) from None

    def _refused(self, host: str, exc: Exception) -> PlatformAuthError:
        who = f"user {self.username!r}" if self.username else "the service's Kerberos ticket"
        return PlatformAuthError(
            f"Windows authentication (Negotiate) to {host} with {who} failed: {exc}; check "
            "[platform] username and password, or the keytab and ticket cache",
            kind="unauthorized",
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401 or _challenge(response) is None:
            return
        host = request.url.host
        context = self._context(host)
        incoming: bytes | None = None
        for _leg in range(_MAX_LEGS):
            try:
                outgoing = context.step(incoming)
            except spnego.exceptions.SpnegoError as exc:
                raise self._refused(host, exc) from None
            if outgoing is None:  # the context is complete, yet the server still says 401
                return
            request.headers["authorization"] = f"Negotiate {base64.b64encode(outgoing).decode()}"
            response = yield request
            incoming = _challenge(response)
            if response.status_code != 401:
                break
            if not incoming:  # refused: the server started over
                return
        else:
            return
        if incoming and not context.complete:
            # Kerberos mutual authentication: the server proves who it is.
            try:
                context.step(incoming)
            except spnego.exceptions.SpnegoError as exc:
                raise self._refused(host, exc) from None


def _challenge(response: httpx.Response) -> bytes | None:
    """The server's Negotiate token (``b""`` for a bare ``Negotiate``), or None without one."""
    for header in response.headers.get_list("www-authenticate", split_commas=True):
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != _SCHEME:
            continue
        try:
            return base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None
