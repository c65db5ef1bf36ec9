"""HTTP clients for the platform's API, built once from ``[platform]`` and shared."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import httpx

from jobhooks.config.schema import PlatformSettings
from jobhooks.sdk.context import unconfigured_async_client, unconfigured_client

__all__ = ["PlatformClients", "build_clients", "platform_headers"]


def platform_headers(settings: PlatformSettings) -> dict[str, str]:
    """The headers the platform's API expects on every request."""
    return {
        "x-keyfactor-requested-with": "APIClient",
        "x-keyfactor-api-version": settings.api_version,
        "accept": "application/json",
        "user-agent": "jobhooks",
    }


@dataclass(frozen=True)
class PlatformClients:
    """A sync and an async client for the platform (unconfigured ones raise on use)."""

    client: httpx.Client
    async_client: httpx.AsyncClient

    def close(self) -> None:
        """Close the sync client (the async one is closed by :meth:`aclose`)."""
        if self.client is not unconfigured_client():
            self.client.close()

    async def aclose(self) -> None:
        """Close both clients."""
        self.close()
        if self.async_client is not unconfigured_async_client():
            await self.async_client.aclose()


def _verify(settings: PlatformSettings) -> ssl.SSLContext | bool:
    if not settings.verify:
        return False
    if settings.ca_bundle:
        return ssl.create_default_context(cafile=settings.ca_bundle)
    return True


def build_clients(settings: PlatformSettings) -> PlatformClients:
    """Clients with the base URL, credentials, TLS settings, timeout and headers of
    ``[platform]``; without a url, clients that raise PlatformNotConfigured."""
    if not settings.url:
        return PlatformClients(unconfigured_client(), unconfigured_async_client())
    auth = None
    headers = platform_headers(settings)
    if settings.username and settings.password is not None:
        auth = httpx.BasicAuth(settings.username, settings.password.reveal())
    elif settings.token is not None:
        headers["authorization"] = f"Bearer {settings.token.reveal()}"
    options = {
        "base_url": settings.url + "/",
        "headers": headers,
        "auth": auth,
        "timeout": settings.timeout,
        "verify": _verify(settings),
        "follow_redirects": False,
    }
    return PlatformClients(httpx.Client(**options), httpx.AsyncClient(**options))  # type: ignore[arg-type]
