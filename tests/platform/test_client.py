"""``context.client`` and ``context.async_client`` against a loopback stand-in for the platform.

(This folder has no ``__init__.py``: a test package named ``platform`` would
shadow the standard library's module of that name.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HttpReceiver, Received, TestCertificates

from jobhooks.config.schema import PlatformSettings
from jobhooks.platform.client import build_clients

WriteConfig = Callable[..., Path]

PASSWORD = "kf-pw-9Lr2-never-print-me"
TOKEN = "kf-bearer-Jd73-never-print-me"
HISTORY = "/KeyfactorAPI/OrchestratorJobs/JobHistory"
ROWS = [{"JobHistoryId": 2170, "Result": "Failure", "Message": "Access denied"}]

PROBES = '''
"""Handlers that read the job history through the context's clients."""

import json
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler


class PlatformProbe(JobCompleteHandler):
    out: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        response = context.client.get("OrchestratorJobs/JobHistory", params={"pq.returnLimit": 5})
        response.raise_for_status()
        Path(self.out).write_text(json.dumps(response.json()), encoding="utf-8")
        return True


class AsyncPlatformProbe(PlatformProbe):
    async def run_handler(self, context: JobCompleteContext) -> bool:
        response = await context.async_client.get(
            "OrchestratorJobs/JobHistory", params={"pq.returnLimit": 5}
        )
        response.raise_for_status()
        Path(self.out).write_text(json.dumps(response.json()), encoding="utf-8")
        return True
'''


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``platform_probes`` importable; returns the file the probes write to."""
    directory = tmp_path / "probes"
    directory.mkdir()
    (directory / "platform_probes.py").write_text(PROBES, encoding="utf-8")
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.setenv("KEYFACTOR_PASSWORD", PASSWORD)
    monkeypatch.setenv("KEYFACTOR_TOKEN", TOKEN)
    return tmp_path / "answer.json"


def platform(expected_authorization: str) -> Callable[[Received], tuple[int, bytes]]:
    """A platform that serves the job history under /KeyfactorAPI to one credential."""

    def respond(request: Received) -> tuple[int, bytes]:
        if request.path != HISTORY:
            return 404, b'{"Message": "no such endpoint"}'
        if request.headers.get("authorization") != expected_authorization:
            return 401, b'{"Message": "unauthorized"}'
        if request.headers.get("x-keyfactor-requested-with") != "APIClient":
            return 400, b'{"Message": "x-keyfactor-requested-with is required"}'
        return 200, json.dumps(ROWS).encode()

    return respond


def config_text(platform_section: str, probe: str, out: Path) -> str:
    return textwrap.dedent(platform_section) + textwrap.dedent(
        f"""
        [[handlers]]
        name = "probe"
        type = "platform_probes:{probe}"
        job_types = "*"
        timeout = 10
        [handlers.properties]
        out = "{out}"
        """
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("probe", ["PlatformProbe", "AsyncPlatformProbe"])
@pytest.mark.parametrize("base", ["KeyfactorAPI", "KeyfactorAPI/"])
def test_basic_credentials_base_path_and_platform_headers(
    cli: Any,
    write_config: WriteConfig,
    http_receiver: HttpReceiver,
    probes: Path,
    probe: str,
    base: str,
) -> None:
    http_receiver.respond = platform(basic("DOMAIN\\svc-jobhooks", PASSWORD))
    section = f"""
        [platform]
        url = "{http_receiver.url}/{base}"
        username = "DOMAIN\\\\svc-jobhooks"
        password = "env:KEYFACTOR_PASSWORD"
    """
    result = cli(
        "test-handler", "probe", "-c", str(write_config(config_text(section, probe, probes)))
    )
    assert result.exit_code == 0, result.output
    assert json.loads(probes.read_text()) == ROWS
    (request,) = http_receiver.requests
    assert (request.method, request.path) == ("GET", HISTORY)
    assert request.query == {"pq.returnLimit": ["5"]}
    assert request.headers["x-keyfactor-requested-with"] == "APIClient"
    assert request.headers["x-keyfactor-api-version"] == "1"
    assert request.headers["accept"] == "application/json"
    assert PASSWORD not in result.output


@pytest.mark.parametrize("probe", ["PlatformProbe", "AsyncPlatformProbe"])
def test_a_bearer_token(
    cli: Any, write_config: WriteConfig, http_receiver: HttpReceiver, probes: Path, probe: str
) -> None:
    http_receiver.respond = platform(f"Bearer {TOKEN}")
    section = f"""
        [platform]
        url = "{http_receiver.url}/KeyfactorAPI"
        token = "env:KEYFACTOR_TOKEN"
    """
    result = cli(
        "test-handler", "probe", "-c", str(write_config(config_text(section, probe, probes)))
    )
    assert result.exit_code == 0, result.output
    assert json.loads(probes.read_text()) == ROWS
    assert TOKEN not in result.output


def test_wrong_credentials_fail_the_attempt_with_the_status(
    cli: Any, write_config: WriteConfig, http_receiver: HttpReceiver, probes: Path
) -> None:
    http_receiver.respond = platform(basic("DOMAIN\\svc-jobhooks", "another password"))
    section = f"""
        [platform]
        url = "{http_receiver.url}/KeyfactorAPI"
        username = "DOMAIN\\\\svc-jobhooks"
        password = "env:KEYFACTOR_PASSWORD"
    """
    config = write_config(config_text(section, "PlatformProbe", probes))
    result = cli("test-handler", "probe", "-c", str(config))
    assert result.exit_code == 1
    assert "HTTPStatusError: Client error '401 Unauthorized'" in result.stdout
    assert PASSWORD not in result.output


PAIRED = "[platform]: username and password go together: give both or neither"
KF_URL = 'url = "https://kf.example.com/KeyfactorAPI"'


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (f'[platform]\n{KF_URL}\nusername = "DOMAIN\\\\svc"', PAIRED),
        (f'[platform]\n{KF_URL}\npassword = "env:KEYFACTOR_PASSWORD"', PAIRED),
        (
            '[platform]\nurl = "kf.example.com/API"',
            "[platform] url: expected an http:// or https:// URL, got 'kf.example.com/API'",
        ),
    ],
)
def test_incomplete_platform_settings_are_validation_errors(
    cli: Any, write_config: WriteConfig, probes: Path, section: str, problem: str
) -> None:
    result = cli("validate", "-c", str(write_config(config_text(section, "PlatformProbe", probes))))
    assert result.exit_code == 1
    assert problem in result.stderr
    assert PASSWORD not in result.output


@pytest.mark.parametrize(
    "url",
    ["https://kf.example.com?tenant=pki@example.com", "https://kf.example.com/@me"],
)
def test_an_at_sign_after_the_host_is_no_credential(url: str) -> None:
    """Only 'user:password@' before the host is refused: an '@' in a query (a tenant
    given as a mail address) was refused as credentials."""
    settings = PlatformSettings(url=url, token_url=url, client_id="jobhooks", client_secret="s")
    assert (settings.url, settings.token_url) == (url, url)


@pytest.mark.parametrize("probe", ["PlatformProbe", "AsyncPlatformProbe"])
def test_without_a_url_the_client_says_what_to_configure(
    cli: Any, write_config: WriteConfig, probes: Path, probe: str
) -> None:
    result = cli("test-handler", "probe", "-c", str(write_config(config_text("", probe, probes))))
    assert result.exit_code == 1
    assert (
        "PlatformNotConfigured: context.client needs the platform's API: "
        "set [platform] url (and credentials) in jobhooks.toml"
    ) in result.stdout
    assert not probes.exists()


@pytest.fixture
def https_platform(test_certificates: TestCertificates) -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(tls=test_certificates.server_context())
    receiver.respond = platform(f"Bearer {TOKEN}")
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.mark.parametrize("probe", ["PlatformProbe", "AsyncPlatformProbe"])
def test_https_with_a_private_ca_bundle(
    cli: Any,
    write_config: WriteConfig,
    https_platform: HttpReceiver,
    test_certificates: TestCertificates,
    probes: Path,
    probe: str,
) -> None:
    section = f"""
        [platform]
        url = "{https_platform.url}/KeyfactorAPI"
        token = "env:KEYFACTOR_TOKEN"
        ca_bundle = "{test_certificates.ca}"
    """
    result = cli(
        "test-handler", "probe", "-c", str(write_config(config_text(section, probe, probes)))
    )
    assert result.exit_code == 0, result.output
    assert json.loads(probes.read_text()) == ROWS
    assert [request.path for request in https_platform.requests] == [HISTORY]


def test_https_without_the_ca_bundle_refuses_the_certificate(
    cli: Any, write_config: WriteConfig, https_platform: HttpReceiver, probes: Path
) -> None:
    section = f"""
        [platform]
        url = "{https_platform.url}/KeyfactorAPI"
        token = "env:KEYFACTOR_TOKEN"
    """
    config = write_config(config_text(section, "PlatformProbe", probes))
    result = cli("test-handler", "probe", "-c", str(config))
    assert result.exit_code == 1
    assert "ConnectError" in result.stdout and "CERTIFICATE_VERIFY_FAILED" in result.stdout
    assert https_platform.requests == [], "no request was sent to an unverified server"
    assert TOKEN not in result.output


def test_a_handler_that_closes_the_shared_clients_leaves_them_open_for_the_next_runs() -> None:
    """``with context.client as client:`` is the usual httpx idiom: it closed the client
    every run shares, and each later run (of any handler) failed with "Cannot reopen a
    client instance, once it has been closed"."""
    clients = build_clients(PlatformSettings(url="https://kf.example.com/KeyfactorAPI"))

    async def runs() -> None:
        for _run in range(2):
            with clients.client as client:
                assert client is clients.client
            clients.client.close()
            async with clients.async_client as async_client:
                assert async_client is clients.async_client
            await clients.async_client.aclose()
        assert not clients.client.is_closed
        assert not clients.async_client.is_closed
        await clients.aclose()  # as the process stops

    asyncio.run(runs())
    assert clients.client.is_closed
    assert clients.async_client.is_closed
