"""OAuth 2 client credentials as an ``httpx.Auth`` flow, shared by every platform client.

The token is fetched from ``token_url`` on first use, sent as ``Authorization:
Bearer``, refreshed shortly before it expires, and fetched again once when the
platform answers 401 (it may have been revoked or the clocks may disagree).

Only a 400, 401 or 403 from the token endpoint refuses the credentials; a 408,
429 or 5xx is the token service failing (:class:`PlatformBusy`, worth retrying),
and a redirect or another status says ``token_url`` is not the token endpoint.

Only the answers the flow itself consumes are read here, each within a cap: the
token endpoint's (at most :data:`TOKEN_ANSWER_CAP`) and a 401 that is retried (its
first :data:`DISCARDED_CAP` bytes). The answer handed back to the caller is left
unread, so that whoever reads it (``PlatformApi``) applies its own cap.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from urllib.parse import quote, quote_plus

import httpx

from jobhooks.errors import PlatformAuthError, PlatformBusy, PlatformError
from jobhooks.platform.rest import BUSY, retry_after
from jobhooks.sdk.secret import Secret

__all__ = ["ClientCredentialsAuth"]

DEFAULT_LIFETIME = 300.0
"""Seconds a token is assumed to live when the endpoint does not say (no ``expires_in``)."""
TOKEN_ANSWER_CAP = 256 * 1024
"""Bytes a token endpoint's answer may have (one carries a token of a few KB)."""
DISCARDED_CAP = 64 * 1024
"""Bytes read of an answer the flow discards (a 401 before the retry); the rest is dropped."""


class _Capped(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response's byte stream, ended after ``cap`` bytes: by ``refusal`` (an exception
    to raise), or quietly (an answer nobody will read, that httpx drains before a retry)."""

    def __init__(
        self,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        cap: int,
        refusal: Callable[[], Exception] | None = None,
    ) -> None:
        self._stream = stream
        self._cap = cap
        self._refusal = refusal

    def _over(self, size: int) -> bool:
        if size <= self._cap:
            return False
        if self._refusal is not None:
            raise self._refusal()
        return True

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        assert isinstance(self._stream, httpx.SyncByteStream)
        for chunk in self._stream:
            size += len(chunk)
            if self._over(size):
                yield chunk[: len(chunk) - (size - self._cap)]
                return
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        assert isinstance(self._stream, httpx.AsyncByteStream)
        async for chunk in self._stream:
            size += len(chunk)
            if self._over(size):
                yield chunk[: len(chunk) - (size - self._cap)]
                return
            yield chunk

    def close(self) -> None:
        if isinstance(self._stream, httpx.SyncByteStream):
            self._stream.close()

    async def aclose(self) -> None:
        if isinstance(self._stream, httpx.AsyncByteStream):
            await self._stream.aclose()


class ClientCredentialsAuth(httpx.Auth):
    """Bearer tokens from an OAuth 2 token endpoint (grant ``client_credentials``).

    One instance serves the sync and the async client alike: the token request
    goes out through whichever client is sending, with its TLS settings.
    """

    requires_response_body = False
    """Only the answers the flow consumes are read, and within a cap (see the module)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        scope: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetched = 0
        """How many tokens were fetched (for tests and diagnostics)."""

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def _valid_token(self) -> str | None:
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            return None

    def _token_request(self) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret.reveal(),
        }
        if self._scope:
            form["scope"] = self._scope
        # Uncompressed: the answer's cap counts the bytes received, and a compressed one
        # could inflate to gigabytes within it.
        headers = {"accept": "application/json", "accept-encoding": "identity"}
        return httpx.Request("POST", self.token_url, data=form, headers=headers)

    def _refusal(self, response: httpx.Response) -> PlatformError:
        """Why a token endpoint that did not answer 200 gave no token."""
        status = response.status_code
        answered = f"the OAuth token endpoint {self.token_url} answered {status}"
        if status >= 500 or status in BUSY:
            wait = retry_after(response.headers)
            asked = f"; it asked to retry after {wait:g} s" if wait is not None else ""
            return PlatformBusy(
                f"{answered} {self._said(response)}: the token service is failing or busy, "
                f"not refusing client_id {self.client_id!r} (will retry{asked})",
                "server_error" if status >= 500 else "client_error",
                status,
                wait,
            )
        if status in (400, 401, 403):
            return PlatformAuthError(
                f"the OAuth token endpoint {self.token_url} refused client_id "
                f"{self.client_id!r}: {status} {self._said(response)}; "
                "check [platform] client_id and client_secret",
                kind="unauthorized",
                status=status,
            )
        if 300 <= status < 400:
            location = response.headers.get("location", "").strip()
            try:
                target = response.request.url.join(location) if location else None
            except (httpx.InvalidURL, ValueError):
                target = None
            port = f":{target.port}" if target and target.port else ""
            # Host and path only: a query may carry a code or a secret.
            where = f"{target.scheme}://{target.host}{port}{target.path}" if target else "nowhere"
            return PlatformError(
                f"{answered} {response.reason_phrase}, pointing to {where}; redirects are not "
                "followed: set [platform] token_url to the final address",
                kind="bad_response",
                status=status,
            )
        return PlatformError(
            f"{answered} {self._said(response)}: is [platform] token_url the token "
            "endpoint of the identity provider (for Keycloak, "
            ".../realms/<realm>/protocol/openid-connect/token)?",
            kind="client_error",
            status=status,
        )

    def _said(self, response: httpx.Response) -> str:
        """What a token endpoint's refusal says, with the client secret blotted out (an
        identity provider may echo the request it refused)."""
        secret = self._secret.reveal()

        def blot(text: str) -> str:
            if secret:
                for form in {secret, quote_plus(secret), quote(secret, safe="")}:
                    text = text.replace(form, "[client_secret]")
            return text

        return _oauth_error(response, blot)

    def _store(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise self._refusal(response)
        try:
            data = response.json()
            token = data["access_token"]
            lifetime = _lifetime(data.get("expires_in"))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            # Never the answer itself: it may hold a token under another name.
            raise PlatformError(
                f"the OAuth token endpoint {self.token_url} answered without an access_token "
                f"({_shape(response)}); is token_url the realm's token endpoint?",
                kind="bad_response",
            ) from None
        if not isinstance(token, str) or not token:
            raise PlatformError(
                f"the OAuth token endpoint {self.token_url} answered an empty access_token",
                kind="bad_response",
            )
        # Refresh a minute early, or halfway through a token shorter than two minutes.
        margin = min(60.0, lifetime / 2)
        with self._lock:
            self._token = token
            self._refresh_at = self._clock() + max(0.0, lifetime - margin)
            self.fetched += 1
        return token

    def _fetch(self, stale: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        with self._lock:
            # Another request may have refreshed the token meanwhile.
            if (
                self._token is not None
                and self._token != stale
                and self._clock() < self._refresh_at
            ):
                return self._token
        response = yield self._token_request()
        return self._store(response)

    def _too_big(self) -> PlatformError:
        return PlatformError(
            f"the OAuth token endpoint {self.token_url} answered more than "
            f"{TOKEN_ANSWER_CAP // 1024} KiB, which no token answer needs; such an answer is "
            "refused: is [platform] token_url the token endpoint of the identity provider?",
            kind="bad_response",
        )

    def _bound(
        self, original: httpx.Request, sent: httpx.Request, response: httpx.Response
    ) -> bool:
        """Cap what will be read of ``response``; True if the flow reads it itself (a
        token answer: every request the flow sends other than ``original``)."""
        if sent is original:
            return False
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # Asked for identity: the cap counts bytes received, and 256 KiB of gzip (of
            # gzip of gzip ...) inflates to gigabytes, so a compressed answer is not read.
            raise PlatformError(
                f"the OAuth token endpoint {self.token_url} answered compressed "
                f"({_printable(encoding)}) though asked for an uncompressed answer, which is "
                "refused: a token answer is read only up to "
                f"{TOKEN_ANSWER_CAP // 1024} KiB as sent; is [platform] token_url the token "
                "endpoint of the identity provider, or does a proxy before it compress?",
                kind="bad_response",
            )
        response.stream = _Capped(response.stream, TOKEN_ANSWER_CAP, self._too_big)
        return True

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        sent: httpx.Request | None = next(flow)
        while sent is not None:
            response = yield sent
            if self._bound(request, sent, response):
                response.read()
            sent = _following(flow, request, sent, response)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        sent: httpx.Request | None = next(flow)
        while sent is not None:
            response = yield sent
            if self._bound(request, sent, response):
                await response.aread()
            sent = _following(flow, request, sent, response)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_token()
        if token is None:
            token = yield from self._fetch(stale=None)
        request.headers["authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            with self._lock:
                if self._token == token:
                    self._token = None
            token = yield from self._fetch(stale=token)
            request.headers["authorization"] = f"Bearer {token}"
            yield request


def _following(
    flow: Generator[httpx.Request, httpx.Response, None],
    original: httpx.Request,
    sent: httpx.Request,
    response: httpx.Response,
) -> httpx.Request | None:
    """The request the flow sends after ``response`` (to ``sent``), or None when it is done;
    an answer to ``original`` that the flow goes past is discarded (see :func:`_discard`)."""
    try:
        following = flow.send(response)
    except StopIteration:
        return None
    if sent is original:
        _discard(response)
    return following


def _discard(response: httpx.Response) -> None:
    """Cap what httpx reads of an answer the flow discards (it reads one before it sends the
    next request), and leave it as sent: a few KB of gzip of gzip inflate to gigabytes."""
    response.stream = _Capped(response.stream, DISCARDED_CAP)
    if "content-encoding" in response.headers:
        del response.headers["content-encoding"]


def _lifetime(value: object) -> float:
    """Seconds a token lives by its ``expires_in``: :data:`DEFAULT_LIFETIME` when that is
    missing, zero or below, or no number (``"an hour"``, a list): the token is there all the
    same (and a 401 fetches another)."""
    if not value or isinstance(value, bool) or not isinstance(value, int | float | str):
        return DEFAULT_LIFETIME
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_LIFETIME
    return DEFAULT_LIFETIME if math.isnan(seconds) or seconds <= 0 else seconds


def _printable(text: str) -> str:
    return repr(text[:40])[1:-1]


def _shape(response: httpx.Response) -> str:
    """What a token answer without an access_token held, without any of its values."""
    try:
        data = response.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep to decode
        kind = response.headers.get("content-type", "no content type")
        return f"got {len(response.content)} bytes that are not JSON ({kind})"
    if isinstance(data, dict):
        keys = ", ".join(repr(str(key)[:40]) for key in list(data)[:10]) or "none"
        return f"got a JSON object with the keys {keys}"
    return f"got a JSON {type(data).__name__}"


def _oauth_error(response: httpx.Response, blot: Callable[[str], str]) -> str:
    """What a refusal says (``blot`` applied before it is cut short: a secret the cut
    would split is blotted out whole)."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return blot(response.text)[:200] or response.reason_phrase
    if isinstance(data, dict) and "error" in data:
        description = data.get("error_description")
        said = f"{data['error']}: {description}" if description else str(data["error"])
        return blot(said)[:300]
    return blot(response.text)[:200]
