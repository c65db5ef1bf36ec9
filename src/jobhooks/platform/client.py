"""HTTP clients for the platform's API, built once from ``[platform]`` and shared."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from types import TracebackType

import httpx

from jobhooks.config.schema import PlatformSettings
from jobhooks.platform.oauth import ClientCredentialsAuth
from jobhooks.sdk.context import unconfigured_async_client, unconfigured_client

__all__ = [
    "PlatformClients",
    "build_clients",
    "describe_credential",
    "platform_auth",
    "platform_headers",
]


def platform_headers(settings: PlatformSettings) -> dict[str, str]:
    """The headers the platform's API expects on every request."""
    return {
        "x-keyfactor-requested-with": "APIClient",
        "x-keyfactor-api-version": settings.api_version,
        "accept": "application/json",
        "user-agent": "jobhooks",
    }


class _SharedClient(httpx.Client):
    """The platform's sync client, shared by every run: a handler that closes it (``with
    context.client:`` included, the usual httpx idiom) leaves it open for the runs after
    it; :meth:`PlatformClients.close` closes it."""

    def __enter__(self) -> _SharedClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None = None,
        error: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        pass

    def close(self) -> None:
        pass


class _SharedAsyncClient(httpx.AsyncClient):
    """The async twin of :class:`_SharedClient`."""

    async def __aenter__(self) -> _SharedAsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None = None,
        error: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True)
class PlatformClients:
    """A sync and an async client for the platform (unconfigured ones raise on use)."""

    client: httpx.Client
    async_client: httpx.AsyncClient

    def close(self) -> None:
        """Close the sync client (the async one is closed by :meth:`aclose`)."""
        if self.client is not unconfigured_client():
            httpx.Client.close(self.client)  # a handler's close() leaves a shared one open

    async def aclose(self) -> None:
        """Close both clients."""
        self.close()
        if self.async_client is not unconfigured_async_client():
            await httpx.AsyncClient.aclose(self.async_client)


def _verify(settings: PlatformSettings) -> ssl.SSLContext | bool:
    if not settings.verify:
        return False
    if settings.ca_bundle:
        return ssl.create_default_context(cafile=settings.ca_bundle)
    return True


def platform_auth(settings: PlatformSettings) -> httpx.Auth | None:
    """The authentication of ``[platform]``: Windows (Negotiate), OAuth 2 client
    credentials, Basic, or none (a bearer ``token`` is a header, see :func:`build_clients`)."""
    if settings.auth == "negotiate":
        from jobhooks.platform.negotiate import NegotiateAuth  # the optional extra

        return NegotiateAuth(settings.username, settings.password)
    if settings.token_url and settings.client_id and settings.client_secret is not None:
        return ClientCredentialsAuth(
            settings.token_url, settings.client_id, settings.client_secret, settings.scope
        )
    if settings.username and settings.password is not None:
        return httpx.BasicAuth(settings.username, settings.password.reveal())
    return None


def describe_credential(settings: PlatformSettings) -> str:
    """Which credential requests carry, and where it is configured (never its value)."""
    if settings.auth == "negotiate":
        if settings.username:
            return (
                f"Windows authentication as '{settings.username}' "
                '([platform] auth = "negotiate", username and password)'
            )
        return (
            "Windows authentication with the service's Kerberos ticket "
            '([platform] auth = "negotiate")'
        )
    if settings.token_url and settings.client_id:
        return (
            f"an OAuth token for client_id {settings.client_id!r} from {settings.token_url} "
            "([platform] client_id and client_secret)"
        )
    if settings.username:
        return f"user '{settings.username}' ([platform] username and password)"
    if settings.token is not None:
        return "the bearer token of [platform] token"
    return (
        "no credentials (set [platform] username and password, or token_url, "
        "client_id and client_secret)"
    )


def build_clients(settings: PlatformSettings) -> PlatformClients:
    """Clients with the base URL, credentials, TLS settings, timeout and headers of
    ``[platform]``; without a url, clients that raise PlatformNotConfigured.

    Both clients share one authentication object, so an OAuth token fetched by
    one serves the other until it is refreshed.
    """
    if not settings.url:
        return PlatformClients(unconfigured_client(), unconfigured_async_client())
    headers = platform_headers(settings)
    auth = platform_auth(settings)
    if auth is None and settings.token is not None:
        headers["authorization"] = f"Bearer {settings.token.reveal()}"
    options = {
        "base_url": settings.url + "/",
        "headers": headers,
        "auth": auth,
        "timeout": settings.timeout,
        "verify": _verify(settings),
        "follow_redirects": False,
    }
    return PlatformClients(_SharedClient(**options), _SharedAsyncClient(**options))  # type: ignore[arg-type]
