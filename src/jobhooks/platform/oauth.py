"""OAuth 2 client credentials as an ``httpx.Auth`` flow, shared by every platform client.

The token is fetched from ``token_url`` on first use, sent as ``Authorization:
Bearer``, refreshed shortly before it expires, and fetched again once when the
platform answers 401 (it may have been revoked or the clocks may disagree).

Only a 400, 401 or 403 from the token endpoint refuses the credentials; a 408,
429 or 5xx is the token service failing (:class:`PlatformBusy`, worth retrying),
and a redirect or another status says ``token_url`` is not the token endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator

import httpx

from jobhooks.errors import PlatformAuthError, PlatformBusy, PlatformError
from jobhooks.platform.rest import BUSY, retry_after
from jobhooks.sdk.secret import Secret

__all__ = ["ClientCredentialsAuth"]

DEFAULT_LIFETIME = 300.0
"""Seconds a token is assumed to live when the endpoint does not say (no ``expires_in``)."""


class ClientCredentialsAuth(httpx.Auth):
    """Bearer tokens from an OAuth 2 token endpoint (grant ``client_credentials``).

    One instance serves the sync and the async client alike: the token request
    goes out through whichever client is sending, with its TLS settings.
    """

    requires_response_body = True

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
        return httpx.Request(
            "POST", self.token_url, data=form, headers={"accept": "application/json"}
        )

    def _refusal(self, response: httpx.Response) -> PlatformError:
        """Why a token endpoint that did not answer 200 gave no token."""
        status = response.status_code
        answered = f"the OAuth token endpoint {self.token_url} answered {status}"
        if status >= 500 or status in BUSY:
            wait = retry_after(response.headers)
            asked = f"; it asked to retry after {wait:g} s" if wait is not None else ""
            return PlatformBusy(
                f"{answered} {_oauth_error(response)}: the token service is failing or busy, "
                f"not refusing client_id {self.client_id!r} (will retry{asked})",
                "server_error" if status >= 500 else "client_error",
                status,
                wait,
            )
        if status in (400, 401, 403):
            return PlatformAuthError(
                f"the OAuth token endpoint {self.token_url} refused client_id "
                f"{self.client_id!r}: {status} {_oauth_error(response)}; "
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
            f"{answered} {_oauth_error(response)}: is [platform] token_url the token "
            "endpoint of the identity provider (for Keycloak, "
            ".../realms/<realm>/protocol/openid-connect/token)?",
            kind="client_error",
            status=status,
        )

    def _store(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise self._refusal(response)
        try:
            data = response.json()
            token = data["access_token"]
            lifetime = float(data.get("expires_in") or DEFAULT_LIFETIME)
        except (ValueError, KeyError, TypeError):
            raise PlatformError(
                f"the OAuth token endpoint {self.token_url} answered without an access_token "
                f"(got {response.text[:200]!r}); is token_url the realm's token endpoint?",
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


def _oauth_error(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict) and "error" in data:
        description = data.get("error_description")
        return f"{data['error']}: {description}" if description else str(data["error"])
    return response.text[:200]
