"""OAuth 2 client credentials for the platform's API, against a loopback token endpoint.

(This folder has no ``__init__.py``: see test_client.py.)
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cli
from support.keyfactor import (
    HISTORY,
    FakeKeyfactor,
    KeyfactorServer,
    RawRequest,
    platform_env,
    platform_toml,
)

import jobhooks.cli.config_commands
import jobhooks.cli.poll_commands  # noqa: F401
from jobhooks.config.schema import PlatformSettings
from jobhooks.errors import PlatformAuthError, PlatformBusy, PlatformError
from jobhooks.platform.client import build_clients
from jobhooks.platform.oauth import ClientCredentialsAuth
from jobhooks.platform.rest import PlatformApi
from jobhooks.sdk.secret import Secret

PROBE = """
import json
from pathlib import Path

from jobhooks import JobCompleteContext, JobCompleteHandler


class OAuthProbe(JobCompleteHandler):
    out: str

    async def run_handler(self, context: JobCompleteContext) -> bool:
        answers = []
        for _ in range(2):
            response = await context.async_client.get("OrchestratorJobs/JobHistory")
            response.raise_for_status()
            answers.append(response.json())
        response = context.client.get("Agents")
        response.raise_for_status()
        Path(self.out).write_text(json.dumps(answers), encoding="utf-8")
        return True
"""


@pytest.fixture
def oauth_platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyfactorServer]:
    fake = FakeKeyfactor(auth="oauth")
    fake.add(result=4)
    server = KeyfactorServer(fake)
    for name, value in platform_env(fake).items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.close()


def settings(server: KeyfactorServer, secret: str | None = None) -> PlatformSettings:
    fake = server.fake
    return PlatformSettings(
        url=server.url,
        token_url=server.token_url,
        client_id=fake.client_id,
        client_secret=Secret(secret or fake.client_secret),
    )


def token_requests(server: KeyfactorServer) -> int:
    return sum(1 for s in server.fake.served if s.path == "/token")


def refused(server: KeyfactorServer) -> int:
    return sum(1 for s in server.fake.served if s.status == 401)


def test_context_clients_share_one_token(
    oauth_platform: KeyfactorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "oauth_probe.py").write_text(PROBE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "jobhooks.toml"
    config.write_text(
        platform_toml(oauth_platform, oauth=True)
        + f'\n[[handlers]]\nname = "probe"\ntype = "oauth_probe:OAuthProbe"\njob_types = "*"\n'
        f'[handlers.properties]\nout = "{tmp_path / "out.json"}"\n',
        encoding="utf-8",
    )
    result = cli.jobhooks("test-handler", "probe", "--config", str(config))
    assert result.exit_code == 0, result.output
    answers = json.loads((tmp_path / "out.json").read_text())
    assert len(answers) == 2 and answers[0][0]["Result"] == "Failure"
    assert token_requests(oauth_platform) == 1, "the sync and async clients share the token"
    token_request = next(s for s in oauth_platform.fake.served if s.path == "/token")
    assert b"grant_type=client_credentials" in token_request.body
    assert oauth_platform.fake.client_secret not in result.output


def test_the_token_is_refreshed_before_it_expires(oauth_platform: KeyfactorServer) -> None:
    oauth_platform.fake.token_lifetime = 0.4
    clients = build_clients(settings(oauth_platform))
    try:
        for _ in range(3):
            assert clients.client.get("OrchestratorJobs/JobHistory").status_code == 200
            time.sleep(0.25)
    finally:
        clients.close()
    assert token_requests(oauth_platform) >= 2
    assert refused(oauth_platform) == 0, "never sent a token the platform no longer takes"


def test_a_401_fetches_a_new_token_and_retries_once(oauth_platform: KeyfactorServer) -> None:
    clients = build_clients(settings(oauth_platform))

    async def twice() -> list[int]:
        statuses = [(await clients.async_client.get("OrchestratorJobs/JobHistory")).status_code]
        oauth_platform.fake.revoke_tokens()
        statuses.append((await clients.async_client.get("OrchestratorJobs/JobHistory")).status_code)
        await clients.aclose()
        return statuses

    assert asyncio.run(twice()) == [200, 200]
    assert token_requests(oauth_platform) == 2
    assert refused(oauth_platform) == 1


def test_a_refused_client_names_the_client_and_the_endpoint(
    oauth_platform: KeyfactorServer,
) -> None:
    clients = build_clients(settings(oauth_platform, secret="not-the-secret"))
    try:
        with pytest.raises(PlatformAuthError) as caught:
            clients.client.get("OrchestratorJobs/JobHistory")
    finally:
        clients.close()
    message = str(caught.value)
    assert f"token endpoint {oauth_platform.token_url} refused client_id 'jobhooks'" in message
    assert "401 invalid_client: Invalid client credentials" in message
    assert "[platform] client_id and client_secret" in message
    assert "not-the-secret" not in message
    assert not [s for s in oauth_platform.fake.served if s.path == HISTORY]


def test_the_poller_reads_the_history_with_oauth(
    oauth_platform: KeyfactorServer, tmp_path: Path
) -> None:
    config = tmp_path / "jobhooks.toml"
    config.write_text(
        f'[server]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\n'
        + platform_toml(oauth_platform, oauth=True)
        + '\n[poll]\nstart = "2020-01-01T00:00:00Z"\n'
        + '\n[[handlers]]\nname = "log"\ntype = "log"\njob_types = "*"\n',
        encoding="utf-8",
    )
    result = cli.jobhooks("poll", "--once", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "created 1 completions" in result.stdout
    authorized = [s.headers.get("authorization", "") for s in oauth_platform.fake.served]
    assert all(h.startswith("Bearer ") for h in authorized if h)


def test_the_auth_flow_never_shows_the_secret() -> None:
    auth = ClientCredentialsAuth("https://idp/token", "jobhooks", Secret("s3cr3t-value"))
    assert "s3cr3t" not in repr(auth)


@pytest.mark.parametrize(("status", "kind"), [(503, "server_error"), (429, "client_error")])
def test_a_failing_token_service_is_not_a_refused_client(
    oauth_platform: KeyfactorServer, status: int, kind: str
) -> None:
    def failing(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        request.send_json(status, {"error": "temporarily_unavailable"}, {"retry-after": "30"})
        return True

    oauth_platform.fake.raw_answers.append(failing)
    with pytest.raises(PlatformError) as caught:
        read_history(oauth_platform, limit=5)
    error = caught.value
    assert isinstance(error, PlatformBusy) and not isinstance(error, PlatformAuthError)
    assert (error.kind, error.status, error.retry_after) == (kind, status, 30.0)
    message = str(error)
    assert f"the OAuth token endpoint {oauth_platform.token_url} answered {status}" in message
    assert "the token service is failing or busy, not refusing client_id 'jobhooks'" in message
    assert "will retry" in message
    assert "check [platform] client_id" not in message
    assert not [s for s in oauth_platform.fake.served if s.path == HISTORY]


def test_a_token_url_that_is_not_a_token_endpoint_says_so(
    oauth_platform: KeyfactorServer,
) -> None:
    moved = settings(oauth_platform)
    clients = build_clients(moved.model_copy(update={"token_url": oauth_platform.origin + "/tok"}))
    try:
        with pytest.raises(PlatformError) as caught:
            clients.client.get("OrchestratorJobs/JobHistory")
    finally:
        clients.close()
    assert not isinstance(caught.value, PlatformAuthError)
    assert "answered 404" in str(caught.value) and "[platform] token_url" in str(caught.value)


def read_history(platform: KeyfactorServer, limit: int) -> int:
    """Read the stand-in's job history through the async client, as the poller does, with
    OAuth: how many rows came back."""
    clients = build_clients(settings(platform))

    async def read() -> int:
        try:
            api = PlatformApi(clients.async_client, "an OAuth token for client_id 'jobhooks'")
            return len((await api.history(limit=limit)).rows)
        finally:
            await clients.aclose()

    return asyncio.run(read())


def _flood(sent: list[int], blocks: int = 1500) -> Iterator[bytes]:
    """About 100 MB of a JSON array, were it read to the end."""
    row = json.dumps({"JobHistoryId": 5000, "Message": "x" * 150}).encode()
    block = b",".join([row] * 400)  # about 70 KB
    yield b"[" + block
    for _ in range(blocks):
        sent.append(len(block))
        yield b"," + block
    yield b"]"


def test_with_oauth_a_flooding_history_page_is_refused_while_it_streams(
    oauth_platform: KeyfactorServer,
) -> None:
    # The auth flow must not read the API's answer whole before the size cap sees it.
    sent: list[int] = []

    def flood(request: RawRequest) -> bool:
        if not request.path.endswith("/JobHistory"):
            return False
        request.stream(_flood(sent))
        return True

    oauth_platform.fake.raw_answers.append(flood)
    with pytest.raises(PlatformError) as caught:
        read_history(oauth_platform, limit=50)
    assert caught.value.kind == "bad_response"
    assert "answered more than 16 MiB" in str(caught.value)
    assert sum(sent) < 40_000_000, f"{sum(sent) // 1_000_000} MB were read of the flood"


def test_a_flooding_token_answer_is_refused_while_it_streams(
    oauth_platform: KeyfactorServer,
) -> None:
    sent: list[int] = []

    def flood(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        request.stream(_flood(sent))
        return True

    oauth_platform.fake.raw_answers.append(flood)
    with pytest.raises(PlatformError) as caught:
        read_history(oauth_platform, limit=50)
    message = str(caught.value)
    assert caught.value.kind == "bad_response"
    assert f"the OAuth token endpoint {oauth_platform.token_url} answered more than" in message
    assert "[platform] token_url" in message
    assert sum(sent) < 40_000_000, f"{sum(sent) // 1_000_000} MB were read of the flood"
    assert oauth_platform.fake.client_secret not in message


def test_a_token_answer_that_would_inflate_past_the_cap_is_never_inflated(
    oauth_platform: KeyfactorServer,
) -> None:
    """A token endpoint that compresses when the client allows it: 100 MB of answer in
    100 KB. Asked for it uncompressed, it sends the 100 MB, which the cap refuses early."""
    inflated = b'{"access_token": "' + b"a" * 100_000_000 + b'"}'
    packed = gzip.compress(inflated, compresslevel=9)
    assert len(packed) < 256 * 1024
    sent: list[int] = []

    def bomb(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        if "gzip" in request.handler.headers.get("accept-encoding", ""):
            request.send(200, packed, {"content-encoding": "gzip"})
            return True
        request.stream(_counted(inflated, sent))
        return True

    oauth_platform.fake.raw_answers.append(bomb)
    with pytest.raises(PlatformError) as caught:
        read_history(oauth_platform, limit=50)
    assert "answered more than 256 KiB" in str(caught.value)
    assert sum(sent) < 40_000_000, f"{sum(sent) // 1_000_000} MB were sent"


def _counted(body: bytes, sent: list[int], size: int = 65_536) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        sent.append(size)
        yield body[start : start + size]


def test_a_401_with_an_endless_body_is_not_read_whole(oauth_platform: KeyfactorServer) -> None:
    # The platform refuses the token with a flood; the retry with a new token succeeds.
    sent: list[int] = []
    refusals: list[int] = []

    def refuse_once(request: RawRequest) -> bool:
        if not request.path.endswith("/JobHistory") or refusals:
            return False
        refusals.append(1)
        handler = request.handler
        handler.send_response(401)
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        try:
            for chunk in _flood(sent):
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            handler.close_connection = True
        return True

    oauth_platform.fake.raw_answers.append(refuse_once)
    assert read_history(oauth_platform, limit=50) == 1
    assert sum(sent) < 40_000_000, f"{sum(sent) // 1_000_000} MB were read of the 401"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # A token under another name: the answer itself is a secret.
        (200, json.dumps({"accessToken": "tok-Zr4-never-print-me", "expires_in": 300})),
        # An identity provider that echoes the request it refused.
        (401, "invalid_client: client_secret=kf-secret-Qw8-never-print-me is not valid"),
        # ... where the error's cut at 200 characters would split it.
        (401, "invalid_client: " + "x" * 170 + "kf-secret-Qw8-never-print-me"),
        (
            400,
            json.dumps(
                {
                    "error": "invalid_request",
                    "error_description": "got client_secret=kf-secret-Qw8-never-print-me",
                }
            ),
        ),
    ],
)
def test_a_token_answer_never_puts_a_secret_in_the_error(
    oauth_platform: KeyfactorServer, status: int, body: str
) -> None:
    def answer(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        request.send(status, body.encode(), {"content-type": "application/json"})
        return True

    oauth_platform.fake.raw_answers.append(answer)
    clients = build_clients(settings(oauth_platform))
    try:
        with pytest.raises(PlatformError) as caught:
            clients.client.get("OrchestratorJobs/JobHistory")
    finally:
        clients.close()
    message = str(caught.value)
    assert "never-print-me" not in message and "Qw8" not in message, message
    assert f"the OAuth token endpoint {oauth_platform.token_url}" in message


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_a_token_answer_compressed_though_asked_uncompressed_is_never_inflated(
    oauth_platform: KeyfactorServer, encoding: str
) -> None:
    """A token endpoint that compresses whatever it is asked: 100 MB of answer in 100 KB
    (or far more in two layers). The cap counts bytes received, so the answer is refused
    before it is inflated."""
    inflated = b'{"access_token": "' + b"a" * 100_000_000 + b'"}'
    packed = gzip.compress(inflated, compresslevel=9)
    if "," in encoding:
        packed = gzip.compress(packed, compresslevel=9)
    assert len(packed) < 256 * 1024

    def bomb(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        try:
            request.send(200, packed, {"content-encoding": encoding})
        except OSError:  # refused before it was read: the client hung up
            request.handler.close_connection = True
        return True

    oauth_platform.fake.raw_answers.append(bomb)
    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        read_history(oauth_platform, limit=50)
    assert "compressed" in str(caught.value), caught.value
    assert time.monotonic() - started < 0.5


def test_a_compressed_401_is_never_inflated(oauth_platform: KeyfactorServer) -> None:
    """A 401 before the retry is discarded: one of a few KB that inflates to a gigabyte
    (gzip of gzip) is not inflated on the way to the retry."""
    once = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip, fed a megabyte at a time
    megabyte = b"a" * (1 << 20)
    inner = b"".join(once.compress(megabyte) for _ in range(1000)) + once.flush()
    packed = gzip.compress(inner, compresslevel=9)
    assert len(packed) < 64 * 1024
    refusals: list[int] = []

    def refuse_once(request: RawRequest) -> bool:
        if not request.path.endswith("/JobHistory") or refusals:
            return False
        refusals.append(1)
        request.send(401, packed, {"content-encoding": "gzip, gzip"})
        return True

    oauth_platform.fake.raw_answers.append(refuse_once)
    started = time.monotonic()
    assert read_history(oauth_platform, limit=50) == 1
    assert refusals
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("status", [200, 400])
def test_a_token_answer_nested_too_deep_to_decode_says_what_came(
    oauth_platform: KeyfactorServer, status: int
) -> None:
    def nested(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        request.send(status, b'{"a":' * 30_000, {"content-type": "application/json"})
        return True

    oauth_platform.fake.raw_answers.append(nested)
    with pytest.raises(PlatformError) as caught:
        read_history(oauth_platform, limit=5)
    message = str(caught.value)
    assert f"the OAuth token endpoint {oauth_platform.token_url}" in message
    if status == 200:
        assert "answered without an access_token (got 150000 bytes that are not JSON" in message
    else:
        assert isinstance(caught.value, PlatformAuthError) and "refused client_id" in message


@pytest.mark.parametrize("expires_in", ["an hour", [3600], {"seconds": 3600}])
def test_a_token_with_an_expiry_that_is_no_number_is_used(
    oauth_platform: KeyfactorServer, expires_in: object
) -> None:
    """The answer holds an access_token: an expires_in that cannot be read is as none
    (the token lives the default), not 'answered without an access_token'."""
    fake = oauth_platform.fake

    def odd_expiry(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        form = {"client_id": fake.client_id, "client_secret": fake.client_secret}
        status, answer = fake.issue_token({"grant_type": "client_credentials", **form})
        request.send_json(status, {**answer, "expires_in": expires_in})
        return True

    fake.raw_answers.append(odd_expiry)
    fake.add()
    assert read_history(oauth_platform, limit=5) == len(fake.rows)


@pytest.mark.parametrize("expires_in", [-1, -3600, "-5"])
def test_a_token_with_an_expiry_in_the_past_is_kept_not_fetched_per_request(
    oauth_platform: KeyfactorServer, expires_in: object
) -> None:
    """A negative expires_in says nothing usable about the token, which the platform takes:
    it lives the default (a 401 would fetch another), instead of one token endpoint request
    per platform request."""
    fake = oauth_platform.fake
    issued = []

    def past_expiry(request: RawRequest) -> bool:
        if request.path != "/token":
            return False
        issued.append(request.path)
        form = {"client_id": fake.client_id, "client_secret": fake.client_secret}
        status, answer = fake.issue_token({"grant_type": "client_credentials", **form})
        request.send_json(status, {**answer, "expires_in": expires_in})
        return True

    fake.raw_answers.append(past_expiry)
    clients = build_clients(settings(oauth_platform))
    try:
        for _ in range(5):
            assert clients.client.get("OrchestratorJobs/JobHistory").status_code == 200
    finally:
        clients.close()
    assert len(issued) == 1
