"""``[server] allowed_hosts``: a page that rebinds its own name to this server's address
cannot read the API, the metrics or the dashboard, nor store a completion."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.app import Api, TestClient
from support.reports import AGENT_A, report
from support.server import ServerProcess, create_tokens, write_config
from support.tokens import make_token

from jobhooks.errors import ConfigError
from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app

PATH = "/api/v1/job-completions"
HANDLER = """
[[handlers]]
name = "record"
type = "log"
job_types = "*"
"""


def _config(directory: Path, allowed: str) -> Path:
    return write_config(directory, HANDLER, server=f"allowed_hosts = {allowed}\n")


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Api]:
    """The app answering to ``jobhooks.example.com`` alone (besides addresses)."""
    config = _config(tmp_path, '["jobhooks.example.com", "Jobhooks-2.Example.com."]')
    runtime = Runtime(load(config), config)
    tokens = {
        "admin": make_token(runtime.store, "admin"),
        "agent": make_token(runtime.store, "agent", AGENT_A),
    }
    with TestClient(create_app(runtime), base_url="http://jobhooks.example.com") as client:
        yield Api(client, runtime, tmp_path, tokens)


def _check_in(api: Api, host: str) -> httpx.Response:
    headers = {**api.auth("agent"), "Host": host}
    return api.client.post(PATH, json=report(), headers=headers)


def test_a_check_in_under_a_name_not_listed_is_refused_and_not_stored(named: Api) -> None:
    refused = _check_in(named, "attacker.example:8080")

    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "'attacker.example'" in refused.json()["detail"]
    assert "allowed_hosts" in refused.json()["detail"]
    assert named.stored() == []


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/openapi.json", "/ui/", "/ui/signin"])
def test_nothing_else_is_answered_under_a_name_not_listed(named: Api, path: str) -> None:
    response = named.client.get(path, headers={"Host": "attacker.example"})

    assert response.status_code == 400, response.text
    assert "jobhooks_" not in response.text and "openapi" not in response.text


def test_health_is_answered_under_any_name(named: Api) -> None:
    assert named.client.get("/healthz", headers={"Host": "lb-probe.internal"}).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "jobhooks.example.com",
        "JOBHOOKS.example.com:8443",
        "jobhooks.example.com.",
        "jobhooks-2.example.com",
        "127.0.0.1:8080",
        "10.0.0.5",
        "[::1]:8080",
        "[fe80::1]",
        "localhost:8080",
    ],
)
def test_listed_names_and_any_address_are_answered(named: Api, host: str) -> None:
    answered = _check_in(named, host)

    assert answered.status_code == 202, answered.text
    assert len(named.stored()) == 1


@pytest.mark.parametrize(
    "host",
    [
        "[::1]evil.example",
        "[127.0.0.1].evil.example",
        "[::1]:80@evil.example",
        "[jobhooks.example.com]",
        "127.0.0.1:80@evil.example",
        "localhost:evil.example",
        "jobhooks.example.com:x.evil.example",
    ],
)
def test_a_value_that_is_no_name_with_a_port_is_refused(named: Api, host: str) -> None:
    # An address or listed name before what is no port does not make the rest answered.
    response = named.client.get("/metrics", headers={**named.auth("admin"), "Host": host})

    assert response.status_code == 400, response.text


def test_a_second_host_header_with_a_name_not_listed_is_refused(named: Api) -> None:
    headers = [("Authorization", named.auth("admin")["Authorization"])]
    headers += [("Host", "jobhooks.example.com"), ("Host", "attacker.example")]
    response = named.client.get("/metrics", headers=headers)

    assert response.status_code == 400, response.text


def test_a_reload_changes_the_names(named: Api) -> None:
    assert named.client.get("/metrics", headers={"Host": "new.example"}).status_code == 400
    _config(named.directory, '["new.example"]')

    reloaded = named.client.post("/api/v1/admin/reload", headers=named.auth("admin"))

    assert reloaded.status_code == 200, reloaded.text
    assert named.client.get("/metrics", headers={"Host": "new.example"}).status_code == 200
    assert named.client.get("/metrics").status_code == 400  # jobhooks.example.com, no more


def test_without_a_list_any_name_is_answered(tmp_path: Path) -> None:
    config = write_config(tmp_path, HANDLER)
    runtime = Runtime(load(config), config)
    with TestClient(create_app(runtime)) as client:
        response = client.get("/metrics", headers={"Host": "anything.example"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    "entry", ["https://jobhooks.example.com", "jobhooks.example.com:8443", "a/b", "", "*"]
)
def test_an_entry_that_is_no_host_name_is_a_configuration_error(tmp_path: Path, entry: str) -> None:
    config = _config(tmp_path, f'["ok.example", "{entry}"]')

    with pytest.raises(ConfigError) as raised:
        load(config)

    assert re.search(r"allowed_hosts.*expected host names", str(raised.value), re.S), raised.value


def test_a_served_node_refuses_a_rebound_name(tmp_path: Path) -> None:
    config = _config(tmp_path, '["jobhooks.example.com"]')
    (agent,) = create_tokens(config, str(AGENT_A))
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        with server.client(agent) as client:
            rebound = client.post(PATH, json=report(), headers={"Host": "attacker.example"})
            direct = client.post(PATH, json=report())  # Host: 127.0.0.1:PORT
    finally:
        server.stop()

    assert rebound.status_code == 400, rebound.text
    assert direct.status_code == 202, direct.text
