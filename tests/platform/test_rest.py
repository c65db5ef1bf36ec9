"""The platform's REST API as pull mode reads it: failures name the URL they tried."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import HttpReceiver, TestCertificates
from support.keyfactor import FakeKeyfactor, KeyfactorServer, RawRequest, past
from support.server import free_port

from jobhooks.config.schema import PlatformSettings
from jobhooks.errors import PlatformError
from jobhooks.platform.client import build_clients
from jobhooks.platform.rest import (
    MAX_RETRY_AFTER,
    STORE_TYPES,
    Page,
    PlatformApi,
    PlatformBusy,
    answer_cap,
    retry_after,
)
from jobhooks.sdk.secret import Secret


def fetch(base_url: str, timeout: float = 5) -> PlatformError:
    async def attempt() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
            await PlatformApi(client, "user 'svc'").get(STORE_TYPES, {"pq.returnLimit": 5})

    with pytest.raises(PlatformError) as caught:
        asyncio.run(attempt())
    return caught.value


def test_an_unreachable_platform_is_named_by_the_url_tried() -> None:
    port = free_port()
    error = fetch(f"http://svc:pw-Xq1@127.0.0.1:{port}/KeyfactorAPI/")
    assert error.kind == "unreachable"
    message = str(error)
    assert f"cannot reach the platform at http://127.0.0.1:{port}/KeyfactorAPI/" in message
    assert "CertificateStoreTypes for GET CertificateStoreTypes: ConnectError" in message
    assert "[platform] url" in message
    assert "pw-Xq1" not in message and "returnLimit" not in message


def test_a_platform_that_does_not_answer_in_time_is_named_by_the_url(
    http_receiver: HttpReceiver,
) -> None:
    def hang(_request: object) -> tuple[int, bytes]:
        http_receiver.release.wait(10)
        return 200, b"[]"

    http_receiver.respond = hang
    error = fetch(f"{http_receiver.url}/KeyfactorAPI/", timeout=0.3)
    assert error.kind == "timeout"
    assert f"GET {http_receiver.url}/KeyfactorAPI/CertificateStoreTypes timed out" in str(error)


# -- what the platform answers, against the loopback stand-in ---------------------------


@pytest.fixture
def keyfactor() -> Iterator[KeyfactorServer]:
    """The stand-in platform without authentication, three finished runs in its history."""
    fake = FakeKeyfactor(auth=None)
    for _ in range(3):
        fake.add(at=past(60))
    server = KeyfactorServer(fake)
    try:
        yield server
    finally:
        server.close()


def failure(
    call: Callable[[PlatformApi], Awaitable[object]], client: httpx.AsyncClient
) -> PlatformError:
    """The error ``call`` raises through a :class:`PlatformApi` on ``client`` (then closed)."""

    async def attempt() -> None:
        async with client:
            await call(PlatformApi(client, "user 'svc'"))

    with pytest.raises(PlatformError) as caught:
        asyncio.run(attempt())
    return caught.value


def history(**options: Any) -> Callable[[PlatformApi], Awaitable[Page]]:
    return lambda api: api.history(**options)


def on_history(answer: Callable[[RawRequest], None]) -> Callable[[RawRequest], bool]:
    """A raw answer for job history requests only."""

    def raw(request: RawRequest) -> bool:
        if not request.path.endswith("/JobHistory"):
            return False
        answer(request)
        return True

    return raw


def test_a_trickled_answer_is_bounded_as_a_whole_and_named_by_its_host(
    keyfactor: KeyfactorServer,
) -> None:
    # Each byte comes well within the timeout, which httpx applies to each read alone.
    keyfactor.fake.raw_answers.append(
        on_history(
            lambda request: request.stream((b"[]" if i == 39 else b" " for i in range(40)), 0.1)
        )
    )
    began = time.monotonic()
    error = failure(history(limit=5), httpx.AsyncClient(base_url=keyfactor.url + "/", timeout=0.3))
    took = time.monotonic() - began
    assert error.kind == "timeout"
    message = str(error)
    assert f"GET {keyfactor.url}/OrchestratorJobs/JobHistory timed out" in message
    assert "the platform at 127.0.0.1 had not sent its whole answer after 1.2 s" in message
    assert "[platform] timeout" in message
    assert took < 2.5, f"the request went on for {took:.1f} s"


def test_an_answer_past_the_size_cap_is_refused_while_it_streams(
    keyfactor: KeyfactorServer,
) -> None:
    row = json.dumps({"JobHistoryId": 5000, "Message": "x" * 150}).encode()
    block = b",".join([row] * 400)  # about 70 KB
    sent: list[int] = []

    def flood(request: RawRequest) -> None:
        def chunks() -> Iterator[bytes]:
            yield b"[" + block
            for _ in range(600):  # about 40 MB in all, were it read to the end
                sent.append(len(block))
                yield b"," + block
            yield b"]"

        request.stream(chunks())

    keyfactor.fake.raw_answers.append(on_history(flood))
    error = failure(history(limit=50), httpx.AsyncClient(base_url=keyfactor.url + "/"))
    assert error.kind == "bad_response"
    assert "answered more than 16 MiB" in str(error) and "refused" in str(error)
    assert "pq.returnLimit" in str(error)
    assert answer_cap(50) == 16 * 1024 * 1024 and answer_cap(10_000) > answer_cap(500)


def test_rows_beyond_the_limit_are_dropped_from_keyset_pages_and_refuse_offset_pages(
    keyfactor: KeyfactorServer,
) -> None:
    rows = [keyfactor.fake.to_json(row) for row in keyfactor.fake.rows.values()]
    keyfactor.fake.raw_answers.append(on_history(lambda request: request.send_json(200, rows)))

    async def keyset() -> Page:
        async with httpx.AsyncClient(base_url=keyfactor.url + "/") as client:
            return await PlatformApi(client, "user 'svc'").history(
                'JobHistoryId -gt "0"', sort="JobHistoryId", limit=2
            )

    page = asyncio.run(keyset())
    assert [row["JobHistoryId"] for row in page.rows] == [row["JobHistoryId"] for row in rows[:2]]

    error = failure(
        history(query='OperationStart -ge "2020-01-01T00:00:00"', page=1, limit=2),
        httpx.AsyncClient(base_url=keyfactor.url + "/"),
    )
    assert error.kind == "bad_response"
    assert "answered 3 rows to a request for at most 2" in str(error)
    assert "ignores pq.returnLimit" in str(error) and "nothing of it was stored" in str(error)


RFC_DATE = "%a, %d %b %Y %H:%M:%S GMT"


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (503, "120", 120.0),
        (429, "7", 7.0),
        (503, "date+90", 90.0),  # read against the answer's own Date: clocks may disagree
        (503, "3600", MAX_RETRY_AFTER),
        (503, "soon", None),
        (500, None, None),
    ],
)
def test_a_busy_platform_is_transient_and_carries_its_retry_after(
    keyfactor: KeyfactorServer, status: int, header: str | None, expected: float | None
) -> None:
    keyfactor.fake.clock_ahead = 400 * 86_400.0  # the platform's clock, far from ours

    def busy(request: RawRequest) -> None:
        headers = {}
        if header == "date+90":
            ahead = datetime.now(UTC) + timedelta(seconds=keyfactor.fake.clock_ahead + 90)
            headers["retry-after"] = ahead.strftime(RFC_DATE)
        elif header is not None:
            headers["retry-after"] = header
        request.send_json(status, {"Message": "Service busy"}, headers)

    keyfactor.fake.raw_answers.append(on_history(busy))
    error = failure(history(limit=5), httpx.AsyncClient(base_url=keyfactor.url + "/"))
    assert isinstance(error, PlatformBusy)
    assert error.status == status
    assert error.retry_after == (None if expected is None else pytest.approx(expected, abs=1.5))
    assert "Service busy" in str(error)
    if expected is not None:
        assert "it asked to retry after" in str(error)


def test_a_redirect_names_where_it_points_without_its_query(keyfactor: KeyfactorServer) -> None:
    def redirect(request: RawRequest) -> None:
        target = "https://sso.example.com:8443/login/start?code=secret-code-Xz9&next=/api"
        request.send(302, b"", {"location": target})

    keyfactor.fake.raw_answers.append(on_history(redirect))
    error = failure(history(limit=5), httpx.AsyncClient(base_url=keyfactor.url + "/"))
    message = str(error)
    assert "answered 302 Found to GET OrchestratorJobs/JobHistory" in message
    assert "pointing to https://sso.example.com:8443/login/start;" in message
    assert "redirects are not followed: set [platform] url to the final address" in message
    assert "secret-code" not in message and "next=" not in message


def test_an_untrusted_certificate_is_named_and_points_at_ca_bundle(
    test_certificates: TestCertificates,
) -> None:
    receiver = HttpReceiver(tls=test_certificates.server_context())
    try:
        error = failure(
            history(limit=5), httpx.AsyncClient(base_url=receiver.url + "/KeyfactorAPI/")
        )
    finally:
        receiver.close()
    assert error.kind == "unreachable"
    message = str(error)
    assert f"the TLS certificate of the platform at {receiver.url}/KeyfactorAPI/" in message
    assert "was not trusted" in message and "unable to get local issuer certificate" in message
    assert "set [platform] ca_bundle to that CA's certificate" in message
    assert receiver.requests == []


def test_an_unreachable_token_endpoint_is_named_with_token_url(keyfactor: KeyfactorServer) -> None:
    token_url = f"http://127.0.0.1:{free_port()}/realms/kf/token"
    settings = PlatformSettings(
        url=keyfactor.url,
        token_url=token_url,
        client_id="jobhooks",
        client_secret=Secret("kf-secret-never-print-me"),
    )
    error = failure(history(limit=5), build_clients(settings).async_client)
    assert error.kind == "unreachable"
    message = str(error)
    assert f"cannot reach the OAuth token endpoint at {token_url}" in message
    assert "check [platform] token_url" in message
    assert keyfactor.url not in message and "never-print" not in message


@pytest.mark.parametrize("value", ["\xb2", "1\xb9", "-5", "nan"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    """str.isdigit() holds for superscript digits, which float() refuses: a header that
    odd must not turn a busy answer into an internal error."""
    assert retry_after(httpx.Headers([(b"retry-after", value.encode("latin-1"))])) is None


@pytest.mark.parametrize("status", [200, 503])
def test_a_date_header_past_year_9999_in_utc_is_no_date(status: int) -> None:
    """'Fri, 31 Dec 9999 23:59:59 -0500' parses, then overflows in UTC: a proxy or a
    platform writing it must not turn every answer into an internal error."""
    late = "Fri, 31 Dec 9999 23:59:59 -0500"

    def answer(request: httpx.Request) -> httpx.Response:
        wait = "Fri, 31 Dec 9999 23:59:59 GMT"  # read against the Date, else this host's
        return httpx.Response(status, json=[], headers={"date": late, "retry-after": wait})

    async def read() -> Page:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(base_url="http://kf.test/", transport=transport) as client:
            return await PlatformApi(client, "user 'svc'").history(limit=5)

    if status == 200:
        assert asyncio.run(read()).date is None
        return
    with pytest.raises(PlatformBusy) as caught:
        asyncio.run(read())
    assert caught.value.retry_after == MAX_RETRY_AFTER


@pytest.mark.parametrize("status", [200, 503])
def test_json_nested_too_deep_to_decode_is_a_bad_answer_not_an_internal_error(
    keyfactor: KeyfactorServer, status: int
) -> None:
    """100,000 '[' are 100 KB, well within the caps, and exhaust the JSON decoder's
    recursion: a page (or an error's body) like that is the platform's fault."""

    def nested(request: RawRequest) -> None:
        request.send(status, b"[" * 100_000, {"content-type": "application/json"})

    keyfactor.fake.raw_answers.append(on_history(nested))
    error = failure(history(limit=5), httpx.AsyncClient(base_url=keyfactor.url + "/"))
    if status == 200:
        assert error.kind == "bad_response"
        assert "with something that is not JSON ('[[[[" in str(error)
    else:
        assert isinstance(error, PlatformBusy) and error.status == 503
