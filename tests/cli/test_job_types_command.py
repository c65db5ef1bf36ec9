"""``jobhooks job-types``: a terminal listing of the whole catalog, page after page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import cli
from support.app import TestClient
from support.catalog import add_job_types, bulk_job_types
from support.server import write_config
from support.tokens import database, make_token

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app

CONFIG_ONLY = "0a1e5c2d-0000-4000-8000-00000000c0f1"
Served = tuple[Runtime, str, list[dict[str, Any]]]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The API app in this process behind the CLI's HTTP calls; the requests it answered."""
    config = write_config(
        tmp_path,
        """
        [[handlers]]
        name = "log"
        type = "log"
        job_types = "*"
        """,
        extra=f"""
        [job_types]
        "Named in config" = "{CONFIG_ONLY}"
        """,
    )
    runtime = Runtime(load(config), config, with_worker=False)
    token = make_token(runtime.store, "viewer")
    requests: list[dict[str, Any]] = []
    with TestClient(create_app(runtime)) as client:

        def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
            kwargs.pop("timeout", None)
            requests.append(dict(kwargs.get("params") or {}))
            response: httpx.Response = client.request(method, url, **kwargs)
            return response

        monkeypatch.setattr(httpx, "request", request)
        yield runtime, token, requests


def test_job_types_lists_every_page_of_the_catalog(served: Served) -> None:
    runtime, token, requests = served
    rows = bulk_job_types(1_200, odd=False)
    with database(runtime.store) as engine:
        add_job_types(engine, rows)

    result = cli.jobhooks("job-types", "--url", "http://testserver", "--token", token)

    assert result.exit_code == 0, result.output
    for row in rows:
        assert result.stdout.count(row["id"]) == 1, row
    assert CONFIG_ONLY in result.stdout
    assert len(requests) > 1
    assert all("before" not in params for params in requests[:1])
    assert all(params.get("before") for params in requests[1:])


def test_job_types_with_a_config_reads_its_database_with_no_server_running(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        '[[handlers]]\nname = "log"\ntype = "log"\njob_types = "*"\n',
        extra=f'[job_types]\n"Named in config" = "{CONFIG_ONLY}"\n',
    )
    runtime = Runtime(load(config), config, with_worker=False)
    rows = bulk_job_types(600, odd=False)
    with database(runtime.store) as engine:
        add_job_types(engine, rows)
    runtime.store.close()

    result = cli.jobhooks("job-types", "--config", str(config), "--url", "http://127.0.0.1:9")

    assert result.exit_code == 0, result.output
    for row in rows:
        assert result.stdout.count(row["id"]) == 1, row
    assert CONFIG_ONLY in result.stdout and "Named in config" in result.stdout
