"""``completions``, ``runs`` and ``replay`` against the API app in this process: what
they send, and how they fail on arguments or servers they cannot use."""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update
from support import cli
from support.app import TestClient
from support.loopback import LoopbackServer
from support.reports import new_completion
from support.server import write_config
from support.tokens import database, make_token

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.tables import runs
from jobhooks.web import create_app

ODD = "mail #2? 100%"
"""A valid handler name holding what a URL would otherwise read as its own syntax."""

Served = tuple[Runtime, str]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The API app in this process behind the CLI's HTTP calls, and an admin token."""
    config = write_config(
        tmp_path,
        f"""
        [[handlers]]
        name = "{ODD}"
        type = "log"
        job_types = "*"
        """,
    )
    runtime = Runtime(load(config), config, with_worker=False)
    token = make_token(runtime.store, "admin")
    with TestClient(create_app(runtime)) as client:

        def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
            kwargs.pop("timeout", None)
            response: httpx.Response = client.request(method, url, **kwargs)
            return response

        monkeypatch.setattr(httpx, "request", request)
        yield runtime, token


def _dead_run(runtime: Runtime, handler: str) -> str:
    """A dead run of ``handler``, stored directly: its id."""
    with database(runtime.store) as engine, engine.begin() as connection:
        [receipt] = insert_checkins(connection, [new_completion(handler)], time.time())
        run_id: str = receipt.runs[0].id
        connection.execute(update(runs).where(runs.c.id == run_id).values(status="dead"))
    return run_id


def _status(runtime: Runtime, run_id: str) -> str:
    with database(runtime.store) as engine, engine.connect() as connection:
        status: str = connection.execute(
            select(runs.c.status).where(runs.c.id == run_id)
        ).scalar_one()
    return status


def test_replay_dead_reaches_a_handler_whose_name_has_url_characters(served: Served) -> None:
    """The name went into the path as it was: '#' cut it short, and the server answered
    404 for a handler that exists."""
    runtime, token = served
    run_id = _dead_run(runtime, ODD)

    result = cli.jobhooks("replay", "--handler", ODD, "--dead", "--token", token)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Replaying 1 dead run(s) of {ODD}."
    assert _status(runtime, run_id) == "pending"


@pytest.mark.parametrize("completion_id", ["../handler-runs", "x?limit=1", ".."])
def test_a_completion_id_is_looked_up_never_read_as_another_address(
    served: Served, completion_id: str
) -> None:
    """'../handler-runs' fetched the runs listing and printed a traceback (KeyError)."""
    _runtime, token = served

    result = cli.jobhooks("completions", completion_id, "--token", token)

    assert result.exit_code == 1
    assert "answered 404" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_run_id_never_replays_anything_but_that_run(served: Served) -> None:
    """A run id ending in '?' moved '/replay' into the query: this one replayed every dead
    run of the handler."""
    runtime, token = served
    run_id = _dead_run(runtime, ODD)
    crafted = f"../handlers/{quote(ODD, safe='')}/replay-dead?"

    result = cli.jobhooks("replay", crafted, "--token", token)

    assert result.exit_code == 1
    assert "answered 404" in result.stderr, result.stderr
    assert _status(runtime, run_id) == "dead"


class _NotJobhooks(http.server.BaseHTTPRequestHandler):
    """A server at the wrong URL: a web page for one path, some other JSON for the rest."""

    def do_GET(self) -> None:
        page = self.path.startswith("/page")
        body = b"<html>sign in</html>" if page else json.dumps({"openapi": "3.1.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if page else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    """The origin of a server that answers 200 but is no jobhooks API."""
    server = LoopbackServer(_NotJobhooks)
    try:
        yield server.origin
    finally:
        server.close()


@pytest.mark.parametrize(
    "args",
    [
        ("runs",),
        ("completions",),
        ("completions", "01a2502e-8c5b-723d-8df9-5918e247ec16"),
        ("replay", "01a2502e-8c5b-723d-8df9-5918e247ec16"),
        ("job-types",),
    ],
)
@pytest.mark.parametrize("prefix", ["/page", "/json"])
def test_a_url_that_is_no_jobhooks_api_is_one_clear_error(
    elsewhere: str, args: tuple[str, ...], prefix: str
) -> None:
    """A sign-in page crashed with a JSONDecodeError traceback, other JSON with a KeyError."""
    result = cli.jobhooks(*args, "--url", elsewhere + prefix, "--token", "jh_x")

    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "not a jobhooks API answer" in line, line


@pytest.mark.parametrize(
    ("url", "token", "shown"),
    [
        ("http://[::1", "jh_x", "--url: 'http://[::1' is not a usable URL"),
        ("http://127.0.0.1:8080", "jh_é", "the token holds a character other than"),
        ("http://127.0.0.1:8080", "jh_secret\nline", "the token holds a character other than"),
    ],
)
def test_a_url_or_token_that_cannot_be_sent_is_one_clear_error(
    url: str, token: str, shown: str
) -> None:
    """An IPv6 address without its ']' and a token with an accented letter crashed with a
    traceback; one with a line break was 'cannot reach jobhooks', quoting the token."""
    for args in (("runs",), ("replay", "01a2502e-8c5b-723d-8df9-5918e247ec16"), ("job-types",)):
        result = cli.jobhooks(*args, "--url", url, "--token", token)

        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert shown in line, line
        assert "secret" not in line
