"""The dashboard with a job type catalog as large as agents can make it: the job types
page shows one page with a link to the next, and the completions filter stays small."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.app import TestClient
from support.catalog import add_job_types, bulk_job_types
from support.reports import AGENT_A, report
from support.server import write_config
from support.tokens import database, make_token

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app

PAGE_BYTES = 100_000
GUID_CELL = re.compile(r'<td data-label="GUID"><code>([^<]+)</code></td>')


class Dashboard:
    """A signed-in viewer's client on an API-only runtime."""

    def __init__(self, client: TestClient, runtime: Runtime, agent: str) -> None:
        self.client = client
        self.runtime = runtime
        self.agent = agent

    def get(self, path: str, **params: Any) -> Any:
        # An empty params would drop the query string of ``path``.
        answer = self.client.get(path, params=params or None)
        assert answer.status_code == 200, answer.text[-2000:]
        return answer

    def check_in(self, **fields: Any) -> None:
        answer = self.client.post(
            "/api/v1/job-completions",
            json=report(**fields),
            headers={"Authorization": f"Bearer {self.agent}"},
        )
        assert answer.status_code == 202, answer.text


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    config = write_config(
        tmp_path,
        """
        [[handlers]]
        name = "log"
        type = "log"
        job_types = "*"
        """,
    )
    runtime = Runtime(load(config), config, with_worker=False)
    store = runtime.store
    viewer = make_token(store, "viewer")
    agent = make_token(store, "agent", AGENT_A)
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = client.post("/ui/login", data={"csrf": csrf.group(1), "token": viewer})
        assert signed.status_code == 303
        yield Dashboard(client, runtime, agent)


def _link(page: str, rel: str) -> str:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}"', page)
    assert found is not None, f"no {rel} link"
    return html.unescape(found.group(1))


def test_the_job_types_page_shows_one_page_and_links_to_the_next(dashboard: Dashboard) -> None:
    rows = bulk_job_types(20_000)
    with database(dashboard.runtime.store) as engine:
        add_job_types(engine, rows)
    ordered = [guid for _name, guid in sorted((row["name"], row["id"]) for row in rows)]

    first = dashboard.get("/ui/job-types")
    second = dashboard.get(_link(first.text, "next"))

    assert len(first.content) < PAGE_BYTES
    on_first = GUID_CELL.findall(first.text)
    on_second = GUID_CELL.findall(second.text)
    assert 0 < len(on_first) <= 100 and 0 < len(on_second) <= 100
    assert on_first + on_second == ordered[: len(on_first) + len(on_second)]
    assert dashboard.get(_link(second.text, "first")).text == first.text
    # A cursor that was not made here shows the first page.
    assert GUID_CELL.findall(dashboard.get("/ui/job-types", after="bogus").text) == on_first


def test_a_short_catalog_is_one_page_without_links(dashboard: Dashboard) -> None:
    dashboard.check_in()

    page = dashboard.get("/ui/job-types").text

    assert len(GUID_CELL.findall(page)) == 1 and "Inventory" in page
    assert 'rel="next"' not in page and 'rel="first"' not in page


def test_the_completions_job_type_filter_is_a_guid_field_beyond_a_cap(
    dashboard: Dashboard,
) -> None:
    rows = bulk_job_types(20_000)
    with database(dashboard.runtime.store) as engine:
        add_job_types(engine, rows)
    dashboard.check_in(job_type=rows[7]["name"], job_type_id=rows[7]["id"])

    page = dashboard.get("/ui/completions")
    filtered = dashboard.get("/ui/completions", job_type=rows[7]["id"])

    assert len(page.content) < PAGE_BYTES
    assert page.text.count("<option") <= 520
    assert re.search(r'<input id="f-type" name="job_type"', page.text)
    assert re.search(rf'<input id="f-type" name="job_type" value="{rows[7]["id"]}"', filtered.text)
    assert "No completions" not in filtered.text


def test_the_completions_job_type_filter_lists_a_small_catalog(dashboard: Dashboard) -> None:
    dashboard.check_in()

    page = dashboard.get("/ui/completions").text

    assert '<select id="f-type" name="job_type">' in page
    assert re.search(r'<option value="[^"]+">Inventory</option>', page)
