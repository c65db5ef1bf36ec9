"""``[platform] auth = "negotiate"``: Windows authentication for ``context.client``,
``context.async_client`` and the poller, end to end against a loopback server that
answers as IIS does and accepts NTLM with pyspnego's own acceptor.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import spnego
from support.loopback import LoopbackServer

from jobhooks.config.load import read_config
from jobhooks.errors import PlatformAuthError
from jobhooks.platform.client import build_clients, describe_credential
from jobhooks.platform.rest import HISTORY, PlatformApi

WriteConfig = Callable[..., Path]

USER = "EXAMPLE\\svc-jobhooks"
USER_TOML = USER.replace("\\", "\\\\")
PASSWORD = "kf-ntlm-pw-7Tq2-never-print-me"
ROWS = [{"JobHistoryId": 2170, "Result": "Failure", "Message": "Access denied"}]

PROBES = '''
"""Handlers that read the job history through the context's clients."""

import json
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler


class PlatformProbe(JobCompleteHandler):
    out: str

    def run_handler(self, context: JobCompleteContext) -> bool:
        response = context.client.get("OrchestratorJobs/JobHistory")
        response.raise_for_status()
        Path(self.out).write_text(json.dumps(response.json()), encoding="utf-8")
        return True


class AsyncPlatformProbe(PlatformProbe):
    async def run_handler(self, context: JobCompleteContext) -> bool:
        response = await context.async_client.get("OrchestratorJobs/JobHistory")
        response.raise_for_status()
        Path(self.out).write_text(json.dumps(response.json()), encoding="utf-8")
        return True
'''


class WindowsAuthPlatform:
    """A platform behind IIS Windows authentication, on 127.0.0.1 over HTTP/1.1.

    Each connection runs its own pyspnego acceptor: a request without a
    Negotiate token gets ``401 WWW-Authenticate: Negotiate``, each leg of the
    handshake the acceptor's answer, and a connection the acceptor completed
    the job history. ``principals`` lists who completed a handshake,
    ``legs`` counts the requests that carried a token.
    """

    def __init__(self) -> None:
        self.principals: list[str] = []
        self.legs = 0
        platform = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5
            acceptor: Any = None
            user: str | None = None

            def do_GET(self) -> None:
                header = self.headers.get("authorization", "")
                scheme, _, token = header.partition(" ")
                if self.user is None and scheme.lower() == "negotiate":
                    platform.legs += 1
                    if self.acceptor is None:
                        self.acceptor = spnego.server(protocol="negotiate")
                    try:
                        answer = self.acceptor.step(base64.b64decode(token))
                    except spnego.exceptions.SpnegoError:
                        self.acceptor = None
                        return self._reply(401, b'{"Message": "refused"}', "Negotiate")
                    challenge = "Negotiate" + (
                        f" {base64.b64encode(answer).decode()}" if answer else ""
                    )
                    if not self.acceptor.complete:
                        return self._reply(401, b"", challenge)
                    self.user = str(self.acceptor.client_principal)
                    platform.principals.append(self.user)
                if self.user is None:
                    return self._reply(401, b'{"Message": "unauthorized"}', "Negotiate")
                if self.path.split("?")[0] != f"/KeyfactorAPI/{HISTORY}":
                    return self._reply(404, b'{"Message": "no such endpoint"}')
                self._reply(200, json.dumps(ROWS).encode())

            def _reply(self, status: int, body: bytes, challenge: str | None = None) -> None:
                self.send_response(status)
                if challenge:
                    self.send_header("www-authenticate", challenge)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = LoopbackServer(Handler)
        self.url = f"{self._serving.origin}/KeyfactorAPI"

    def close(self) -> None:
        self._serving.close()


@pytest.fixture
def windows_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The platform, its acceptor knowing one account (pyspnego reads NTLM_USER_FILE)."""
    users = tmp_path / "ntlm-users"
    domain, user = USER.split("\\")
    users.write_text(f"{domain}:{user}:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    platform = WindowsAuthPlatform()
    try:
        yield platform
    finally:
        platform.close()


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``negotiate_probes`` importable; returns the file the probes write to."""
    directory = tmp_path / "probes"
    directory.mkdir()
    (directory / "negotiate_probes.py").write_text(PROBES, encoding="utf-8")
    monkeypatch.syspath_prepend(str(directory))
    return tmp_path / "answer.json"


def section(url: str, password: str = "env:KEYFACTOR_PASSWORD", extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        [platform]
        url = "{url}"
        auth = "negotiate"
        username = "{USER_TOML}"
        password = "{password}"
        {extra}
        """
    )


def probe_config(platform_section: str, probe: str, out: Path) -> str:
    return platform_section + textwrap.dedent(
        f"""
        [[handlers]]
        name = "probe"
        type = "negotiate_probes:{probe}"
        job_types = "*"
        timeout = 10
        [handlers.properties]
        out = "{out}"
        """
    )


@pytest.mark.parametrize("probe", ["PlatformProbe", "AsyncPlatformProbe"])
def test_ntlm_handshake_for_context_clients(
    cli: Any,
    write_config: WriteConfig,
    windows_platform: WindowsAuthPlatform,
    probes: Path,
    probe: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYFACTOR_PASSWORD", PASSWORD)
    config = write_config(probe_config(section(windows_platform.url), probe, probes))
    result = cli("test-handler", "probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(probes.read_text()) == ROWS
    assert windows_platform.principals == [USER]
    assert windows_platform.legs == 2, "NTLM: negotiate, then authenticate"
    assert PASSWORD not in result.output


def test_a_wrong_password_fails_the_attempt_with_401(
    cli: Any,
    write_config: WriteConfig,
    windows_platform: WindowsAuthPlatform,
    probes: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYFACTOR_PASSWORD", "not-the-password-4Hv")
    config = write_config(probe_config(section(windows_platform.url), "PlatformProbe", probes))
    result = cli("test-handler", "probe", "-c", str(config))
    assert result.exit_code == 1
    assert "HTTPStatusError: Client error '401 Unauthorized'" in result.stdout
    assert windows_platform.principals == []
    assert "not-the-password-4Hv" not in result.output


def platform_api(write_config: WriteConfig, text: str) -> tuple[PlatformApi, Any]:
    config, problems = read_config(write_config(text))
    assert problems == []
    clients = build_clients(config.platform)
    return PlatformApi(clients.async_client, describe_credential(config.platform)), clients


def test_the_poller_reads_the_history_with_windows_authentication(
    write_config: WriteConfig,
    windows_platform: WindowsAuthPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYFACTOR_PASSWORD", PASSWORD)
    api, clients = platform_api(write_config, section(windows_platform.url))

    async def read() -> list[Any]:
        try:
            return (await api.get(HISTORY, {})).rows
        finally:
            await clients.aclose()

    assert asyncio.run(read()) == ROWS
    assert windows_platform.principals == [USER]


def test_the_poller_names_the_windows_account_it_was_refused_for(
    write_config: WriteConfig,
    windows_platform: WindowsAuthPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYFACTOR_PASSWORD", "not-the-password-4Hv")
    api, clients = platform_api(write_config, section(windows_platform.url))

    async def read() -> None:
        try:
            await api.get(HISTORY, {})
        finally:
            await clients.aclose()

    with pytest.raises(PlatformAuthError) as refused:
        asyncio.run(read())
    assert str(refused.value).startswith(
        f"the platform answered 401 Unauthorized to GET {HISTORY} with Windows authentication "
        f"as '{USER}' ([platform] auth = \"negotiate\", username and password)"
    )


KF_URL = "https://kf.example.com/KeyfactorAPI"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            f'[platform]\nurl = "{KF_URL}"\nauth = "negotiate"\ntoken = "t"\n',
            '[platform]: auth = "negotiate" is Windows authentication: remove token',
        ),
        (
            f'[platform]\nurl = "{KF_URL}"\nauth = "kerberos"\n',
            "[platform] auth: expected 'basic' or 'negotiate', got 'kerberos'",
        ),
    ],
)
def test_windows_authentication_settings_are_checked(
    cli: Any, write_config: WriteConfig, text: str, problem: str
) -> None:
    result = cli("validate", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert problem in result.stderr


def test_without_the_extra_validate_says_what_to_install(
    cli: Any, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "spnego", None)  # as if pyspnego were not installed
    text = f'[platform]\nurl = "{KF_URL}"\nauth = "negotiate"\nusername = "u"\npassword = "p"\n'
    result = cli("validate", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert (
        '[platform]: auth = "negotiate" needs the optional extra: '
        'pip install "jobhooks[windows-auth]"'
    ) in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has SSPI, not GSSAPI")
def test_kerberos_without_gssapi_says_what_to_install(
    cli: Any, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gssapi", None)
    text = f'[platform]\nurl = "{KF_URL}"\nauth = "negotiate"\n'
    result = cli("validate", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert 'pip install "pyspnego[kerberos]"' in result.stderr
    assert "or give username and password for NTLM" in result.stderr
