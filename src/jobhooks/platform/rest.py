"""The platform's REST API as pull mode reads it: list endpoints, paged, errors named.

Every failure becomes a :class:`PlatformError` whose ``kind`` says what went
wrong (``unreachable``, ``timeout``, ``unauthorized``, ``forbidden``,
``server_error``, ``client_error``, ``bad_response``) and whose message says
what to check.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from jobhooks.errors import PlatformAuthError, PlatformError

__all__ = [
    "ACKNOWLEDGE",
    "AGENTS",
    "CUSTOM_JOB_TYPES",
    "HISTORY",
    "STORE_TYPES",
    "Page",
    "PlatformApi",
]

HISTORY = "OrchestratorJobs/JobHistory"
AGENTS = "Agents"
STORE_TYPES = "CertificateStoreTypes"
CUSTOM_JOB_TYPES = "JobTypes/Custom"
ACKNOWLEDGE = "OrchestratorJobs/Acknowledge"

MAX_PAGES = 10_000
"""Pages read from one list endpoint at most (a platform that ignores paging repeats itself)."""

_PERMISSIONS = {
    HISTORY: "Agent Management: Read",
    AGENTS: "Agent Management: Read",
    STORE_TYPES: "Certificate Store Management: Read",
    CUSTOM_JOB_TYPES: "Agent Management: Read",
}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list endpoint: its rows, and the platform's clock when it answered."""

    rows: list[Any]
    date: datetime | None


class PlatformApi:
    """Reads the platform's list endpoints through a configured async client."""

    def __init__(self, client: httpx.AsyncClient, credential: str) -> None:
        self.client = client
        self.credential = credential
        """Which credential the client sends, for error messages (never its value)."""

    async def get(self, path: str, params: dict[str, Any]) -> Page:
        """GET a list endpoint; raises :class:`PlatformError` unless it answers a JSON array."""
        response = await self._send("GET", path, params=params)
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            raise PlatformError(
                f"GET {path} answered {response.status_code} with something that is not JSON "
                f"({response.text[:120]!r}); is [platform] url the API's base "
                "(for example https://host/KeyfactorAPI)?",
                kind="bad_response",
            ) from None
        if not isinstance(data, list):
            raise PlatformError(
                f"GET {path} answered a JSON {type(data).__name__}, not the array its "
                "documentation describes",
                kind="bad_response",
            )
        return Page(data, _date(response))

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST JSON; raises :class:`PlatformError` unless the answer is 2xx."""
        return await self._send("POST", path, json=body)

    async def history(
        self,
        query: str | None = None,
        *,
        sort: str | None = None,
        ascending: bool = True,
        page: int = 1,
        limit: int = 500,
    ) -> Page:
        """One page of the job history (``pq.*`` parameters as documented)."""
        params: dict[str, Any] = {"pq.pageReturned": page, "pq.returnLimit": limit}
        if query:
            params["pq.queryString"] = query
        if sort:
            params["pq.sortField"] = sort
            params["pq.sortAscending"] = 0 if ascending else 1
        return await self.get(HISTORY, params)

    async def all_pages(self, path: str, limit: int = 500) -> list[Any]:
        """Every item of a paged list endpoint, until an empty page (or a repeated one,
        from a platform that ignores the paging parameters)."""
        items: list[Any] = []
        previous: str | None = None
        for number in range(1, MAX_PAGES + 1):
            page = await self.get(path, {"pq.pageReturned": number, "pq.returnLimit": limit})
            if not page.rows:
                break
            fingerprint = json.dumps(page.rows[:1], sort_keys=True, default=str)
            if fingerprint == previous:
                break
            previous = fingerprint
            items.extend(page.rows)
        return items

    def _shown(self, path: str) -> str:
        """The URL a request for ``path`` goes to, without credentials or query."""
        url = self.client.base_url.join(path)
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{url.host}{port}{url.path}"

    async def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = await self.client.request(method, path, **options)
        except PlatformError:
            raise
        except httpx.TimeoutException as exc:
            raise PlatformError(
                f"{method} {self._shown(path)} timed out ({type(exc).__name__}); the platform "
                "is slow or unreachable ([platform] timeout sets how long to wait)",
                kind="timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise PlatformError(
                f"cannot reach the platform at {self._shown(path)} for {method} {path}: "
                f"{type(exc).__name__}: {exc} (check [platform] url, and that this host can "
                "reach it)",
                kind="unreachable",
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = _detail(response)
        if status == 401:
            raise PlatformAuthError(
                f"the platform answered 401 Unauthorized to {method} {path} with "
                f"{self.credential}: check that credential{detail}",
                kind="unauthorized",
                status=status,
            )
        if status == 403:
            permission = _PERMISSIONS.get(path, "Agent Management: Modify")
            raise PlatformError(
                f"the platform answered 403 Forbidden to {method} {path} with {self.credential}: "
                f"the account needs the permission {permission}{detail}",
                kind="forbidden",
                status=status,
            )
        kind = "server_error" if status >= 500 else "client_error"
        raise PlatformError(
            f"the platform answered {status} {response.reason_phrase} to {method} {path}{detail}",
            kind=kind,
            status=status,
        )


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()[:200]
        return f" ({text})" if text else ""
    if isinstance(data, dict):
        message = data.get("Message") or data.get("message") or data.get("error")
        if message:
            return f" ({str(message)[:300]})"
    return ""


def _date(response: httpx.Response) -> datetime | None:
    value = response.headers.get("date")
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
