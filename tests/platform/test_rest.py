"""The platform's REST API as pull mode reads it: failures name the URL they tried."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import HttpReceiver
from support.server import free_port

from jobhooks.errors import PlatformError
from jobhooks.platform.rest import STORE_TYPES, PlatformApi


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
