"""The platform's REST API as pull mode reads it: list endpoints, paged, errors named.

Every failure becomes a :class:`PlatformError` whose ``kind`` says what went
wrong (``unreachable``, ``timeout``, ``unauthorized``, ``forbidden``,
``server_error``, ``client_error``, ``bad_response``) and whose message says
what to check. A failure of the platform rather than of the request (408, 425,
429, 5xx) is a :class:`PlatformBusy`, carrying the wait its ``Retry-After`` asked for.

Each answer is read whole within :data:`DEADLINE_FACTOR` times the client's
timeout (which bounds each read only), and at most :func:`answer_cap` bytes of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from jobhooks.errors import PlatformAuthError, PlatformBusy, PlatformError

__all__ = [
    "ACKNOWLEDGE",
    "AGENTS",
    "CUSTOM_JOB_TYPES",
    "DEADLINE_FACTOR",
    "HISTORY",
    "MAX_RETRY_AFTER",
    "STORE_TYPES",
    "Page",
    "PlatformApi",
    "PlatformBusy",
    "answer_cap",
    "retry_after",
]

logger = logging.getLogger("jobhooks.platform")

HISTORY = "OrchestratorJobs/JobHistory"
AGENTS = "Agents"
STORE_TYPES = "CertificateStoreTypes"
CUSTOM_JOB_TYPES = "JobTypes/Custom"
ACKNOWLEDGE = "OrchestratorJobs/Acknowledge"

MAX_PAGES = 10_000
"""Pages read from one list endpoint at most (a platform that ignores paging repeats itself)."""
DEADLINE_FACTOR = 4
"""A whole request (token, answer, body) must end within this many times the client's
timeout, which httpx applies to each read alone: a platform trickling a byte a second
would otherwise hold one request for hours."""
MAX_RETRY_AFTER = 600.0
"""The longest wait a ``Retry-After`` header is obeyed for (seconds)."""
_MIB = 1 << 20
ANSWER_FLOOR = 16 * _MIB
"""The most any answer may be, whatever it was asked for."""
ROW_ALLOWANCE = 16 * 1024
"""Bytes allowed per row asked for, where a page asks for more rows than the floor covers.
A job history row as served is about 0.5 KB; its Message (the orchestrator's text) rarely
passes a few KB, so 16 KiB a row is thirty times the usual."""
ERROR_BODY = 64 * 1024
"""Bytes of an error answer read for its message."""
BUSY = frozenset({408, 425, 429})
"""4xx statuses that say the platform cannot serve now, not that the request is wrong."""

_PERMISSIONS = {
    HISTORY: "Agent Management: Read",
    AGENTS: "Agent Management: Read",
    STORE_TYPES: "Certificate Store Management: Read",
    CUSTOM_JOB_TYPES: "Agent Management: Read",
}


def answer_cap(limit: int | None) -> int:
    """The most bytes an answer to a request for ``limit`` rows may have: at least
    :data:`ANSWER_FLOOR` (16 MiB), and :data:`ROW_ALLOWANCE` per row asked for beyond it."""
    return max(ANSWER_FLOOR, (limit or 0) * ROW_ALLOWANCE)


def retry_after(headers: httpx.Headers) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait (a number, or an HTTP date read
    against the answer's own ``Date``, so the clocks need not agree), at most
    :data:`MAX_RETRY_AFTER`; None without a usable one."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # str.isdigit takes '²' too, float() does not
        seconds = float(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        now = _date(headers) or datetime.now(UTC)
        seconds = (moment - now).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class _Answer:
    """An answer read within its cap: status and headers, and the body's bytes."""

    response: httpx.Response
    body: bytes


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
        self._warned_excess = False

    async def get(self, path: str, params: dict[str, Any]) -> Page:
        """GET a list endpoint; raises :class:`PlatformError` unless it answers a JSON array
        (of at most :func:`answer_cap` bytes for the ``pq.returnLimit`` asked for)."""
        limit = params.get("pq.returnLimit")
        answer = await self._send(
            "GET", path, cap=answer_cap(limit if isinstance(limit, int) else None), params=params
        )
        try:
            data = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # '[' * 100_000: too deep
            sample = answer.body[:120].decode("utf-8", "replace")
            raise PlatformError(
                f"GET {path} answered {answer.response.status_code} with something that is "
                f"not JSON ({sample!r}); is [platform] url the API's base "
                "(for example https://host/KeyfactorAPI)?",
                kind="bad_response",
            ) from None
        if not isinstance(data, list):
            raise PlatformError(
                f"GET {path} answered a JSON {type(data).__name__}, not the array its "
                "documentation describes",
                kind="bad_response",
            )
        return Page(data, _date(answer.response.headers))

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST JSON; raises :class:`PlatformError` unless the answer is 2xx."""
        answer = await self._send("POST", path, cap=ANSWER_FLOOR, json=body)
        response = answer.response
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=answer.body, request=response.request
        )

    async def history(
        self,
        query: str | None = None,
        *,
        sort: str | None = None,
        ascending: bool = True,
        page: int = 1,
        limit: int = 500,
    ) -> Page:
        """One page of the job history (``pq.*`` parameters as documented).

        A page never holds more than ``limit`` rows. Sorted ascending by JobHistoryId,
        the rows beyond ``limit`` are dropped: whoever reads on asks for the ids after
        the last row kept, so they are read again. Otherwise (offset pages) the page is
        refused, since the next page's offset would skip the rows dropped.
        """
        params: dict[str, Any] = {"pq.pageReturned": page, "pq.returnLimit": limit}
        if query:
            params["pq.queryString"] = query
        if sort:
            params["pq.sortField"] = sort
            params["pq.sortAscending"] = 0 if ascending else 1
        answer = await self.get(HISTORY, params)
        if len(answer.rows) <= limit:
            return answer
        if sort == "JobHistoryId" and ascending:
            if not self._warned_excess:
                self._warned_excess = True
                logger.warning(
                    "the platform answered %d job history rows to a request for %d "
                    "(it ignores pq.returnLimit); only the first %d of each page are read",
                    len(answer.rows),
                    limit,
                    limit,
                )
            return Page(answer.rows[:limit], answer.date)
        raise PlatformError(
            f"GET {HISTORY} answered {len(answer.rows)} rows to a request for at most {limit} "
            f"(page {page}): the platform ignores pq.returnLimit, so its pages cannot be "
            "followed by offset; nothing of it was stored. Check for a proxy rewriting the "
            "query, or set [poll] page_size to the platform's own page size",
            kind="bad_response",
        )

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
        return _shown_url(self.client.base_url.join(path))

    def _deadline(self) -> float | None:
        """Seconds a whole request may take (None: the client has no timeout)."""
        timeout = self.client.timeout
        parts = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t]
        return DEADLINE_FACTOR * max(parts) if parts else None

    def _target(self, exc: httpx.HTTPError, path: str) -> tuple[str, str]:
        """Which URL a failed request went to, and the setting that names it: the OAuth
        token endpoint (``[platform] token_url``) or the API (``[platform] url``)."""
        try:
            tried = _shown_url(exc.request.url)
        except RuntimeError:  # an exception without its request
            return self._shown(path), "[platform] url"
        token_url = getattr(self.client.auth, "token_url", None)
        if isinstance(token_url, str) and tried == _shown_url(httpx.URL(token_url)):
            return tried, "[platform] token_url"
        return self._shown(path), "[platform] url"

    async def _send(self, method: str, path: str, *, cap: int, **options: Any) -> _Answer:
        deadline = self._deadline()
        try:
            async with asyncio.timeout(deadline):
                async with self.client.stream(method, path, **options) as response:
                    ok = 200 <= response.status_code < 300
                    body, whole = await _read(response, cap if ok else ERROR_BODY)
        except PlatformError:
            raise
        except TimeoutError:
            host = self.client.base_url.host
            raise PlatformError(
                f"{method} {self._shown(path)} timed out: the platform at {host} had not "
                f"sent its whole answer after {deadline:g} s ({DEADLINE_FACTOR} times "
                "[platform] timeout); it is overloaded or trickling its answer",
                kind="timeout",
            ) from None
        except httpx.TimeoutException as exc:
            url, setting = self._target(exc, path)
            raise PlatformError(
                f"{method} {url} timed out ({type(exc).__name__}); the platform is slow or "
                f"unreachable ([platform] timeout sets how long to wait; check {setting})",
                kind="timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, method, path) from None
        if ok and not whole:
            raise PlatformError(
                f"{method} {path} answered more than {cap // _MIB} MiB; such an answer is "
                "refused (and nothing of it stored): a page of the size asked for needs far "
                "less. Is a proxy or the platform ignoring pq.returnLimit?",
                kind="bad_response",
                status=response.status_code,
            )
        if ok:
            return _Answer(response, body)
        raise self._refusal(response, body, method, path)

    def _unreachable(self, exc: httpx.HTTPError, method: str, path: str) -> PlatformError:
        url, setting = self._target(exc, path)
        what = "the OAuth token endpoint" if setting == "[platform] token_url" else "the platform"
        problem = _certificate_problem(exc)
        if problem is not None:
            return PlatformError(
                f"the TLS certificate of {what} at {url} was not trusted for {method} {path} "
                f"({problem}): if a private CA signed it, set [platform] ca_bundle to that "
                f"CA's certificate (PEM); if the name differs, put in {setting} a host name "
                "the certificate names",
                kind="unreachable",
            )
        return PlatformError(
            f"cannot reach {what} at {url} for {method} {path}: "
            f"{type(exc).__name__}: {exc} (check {setting}, and that this host can reach it)",
            kind="unreachable",
        )

    def _refusal(
        self, response: httpx.Response, body: bytes, method: str, path: str
    ) -> PlatformError:
        status = response.status_code
        detail = _detail(body)
        if status == 401:
            return PlatformAuthError(
                f"the platform answered 401 Unauthorized to {method} {path} with "
                f"{self.credential}: check that credential{detail}",
                kind="unauthorized",
                status=status,
            )
        if status == 403:
            permission = _PERMISSIONS.get(path, "Agent Management: Modify")
            return PlatformError(
                f"the platform answered 403 Forbidden to {method} {path} with {self.credential}: "
                f"the account needs the permission {permission}{detail}",
                kind="forbidden",
                status=status,
            )
        answered = f"the platform answered {status} {response.reason_phrase} to {method} {path}"
        if 300 <= status < 400:
            return PlatformError(
                f"{answered}, pointing to {_location(response)}; redirects are not followed: "
                "set [platform] url to the final address",
                kind="bad_response",
                status=status,
            )
        kind = "server_error" if status >= 500 else "client_error"
        if status >= 500 or status in BUSY:
            wait = retry_after(response.headers)
            asked = f" (it asked to retry after {wait:g} s)" if wait is not None else ""
            return PlatformBusy(f"{answered}{detail}{asked}", kind, status, wait)
        return PlatformError(f"{answered}{detail}", kind=kind, status=status)


async def _read(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the (decoded) body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            chunks.append(chunk[: len(chunk) - (size - cap)])
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def _shown_url(url: httpx.URL) -> str:
    """A URL without credentials or query."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _location(response: httpx.Response) -> str:
    """Where a redirect points (host and path: its query may carry secrets)."""
    location = response.headers.get("location", "").strip()
    if not location:
        return "no Location"
    try:
        return _shown_url(response.request.url.join(location))
    except (httpx.InvalidURL, ValueError):
        return "an unusable Location"


def _certificate_problem(exc: BaseException) -> str | None:
    """Why TLS verification refused the server's certificate, if that is what failed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return f" ({text})" if text else ""
    if isinstance(data, dict):
        message = data.get("Message") or data.get("message") or data.get("error")
        if message:
            return f" ({str(message)[:300]})"
    return ""


def _date(headers: httpx.Headers) -> datetime | None:
    value = headers.get("date")
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # year 9999 at -0500: past UTC's
        return None
