"""``GET /api/v1/job-types`` with a catalog as large as agents can make it: one bounded
page at a time, every job type once by following ``next``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from support.app import Api, TestClient
from support.catalog import add_job_types, bulk_job_types
from support.reports import AGENT_A, report
from support.server import write_config
from support.tokens import database, make_token

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.store.catalog import job_type_page
from jobhooks.web import create_app

JOB_TYPES = 20_000
CONFIG_ONLY = "0a1e5c2d-0000-4000-8000-00000000c0f1"
PAGE_BYTES = 100_000


@dataclass
class Catalog:
    api: Api
    rows: list[dict[str, Any]]
    counted: dict[str, Any]
    aliased: dict[str, Any]

    def get(self, **params: Any) -> Any:
        return self.api.client.get(
            "/api/v1/job-types", params=params, headers=self.api.auth("viewer")
        )


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    """20,000 job types in the table, one named in ``[job_types]`` only, another there
    under a second name, and three completions of one of them."""
    rows = bulk_job_types(JOB_TYPES)
    counted, aliased = rows[1234], rows[4321]
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
        "Alias" = "{aliased["id"]}"
        """,
    )
    runtime = Runtime(load(config), config, with_worker=False)
    store = runtime.store
    with database(store) as engine:
        add_job_types(engine, rows)
    tokens = {
        "viewer": make_token(store, "viewer"),
        "agent": make_token(store, "agent", AGENT_A),
    }
    with TestClient(create_app(runtime)) as client:
        api = Api(client, runtime, tmp_path, tokens)
        for _ in range(3):
            body = report(job_type=counted["name"], job_type_id=counted["id"])
            answer = client.post("/api/v1/job-completions", json=body, headers=api.auth("agent"))
            assert answer.status_code == 202, answer.text
        yield Catalog(api, rows, counted, aliased)


def test_one_page_of_job_types_is_bounded_whatever_the_catalog_holds(catalog: Catalog) -> None:
    first = catalog.get()
    widest = catalog.get(limit=500)

    assert first.status_code == 200
    assert len(first.json()["items"]) == 100
    assert first.json()["next"]
    assert len(first.content) < PAGE_BYTES
    assert len(widest.json()["items"]) == 500
    assert len(widest.content) < PAGE_BYTES


def test_following_next_lists_every_job_type_once_in_name_order(catalog: Catalog) -> None:
    listed: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        body = catalog.get(limit=500, **({"before": cursor} if cursor else {})).json()
        listed += body["items"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break

    expected = sorted(
        [(row["name"], row["id"]) for row in catalog.rows] + [("Named in config", CONFIG_ONLY)]
    )
    assert [(item["name"], item["id"]) for item in listed] == expected
    assert pages == -(-len(expected) // 500)
    by_id = {item["id"]: item for item in listed}
    assert by_id[catalog.counted["id"]]["completions"] == 3
    assert by_id[CONFIG_ONLY]["origin"] == "config"
    assert by_id[CONFIG_ONLY]["config_name"] == "Named in config"
    assert by_id[catalog.aliased["id"]]["config_name"] == "Alias"
    assert by_id[catalog.aliased["id"]]["name"] == catalog.aliased["name"]


def test_listing_job_types_never_reads_the_completions_table(catalog: Catalog) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with database(catalog.api.runtime.store) as engine:
        event.listen(engine, "before_cursor_execute", record)
        with engine.connect() as connection:
            page = job_type_page(connection, time.time(), 100, None, {})
    assert len(page.items) == 100

    assert any("job_types" in statement for statement in statements)
    scans = [s for s in statements if re.search(r"\b(FROM|JOIN)\s+completions\b", s, re.I)]
    assert scans == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"before": "not a cursor"}, "before"),
        ({"before": "x" * 5000}, "before"),
    ],
)
def test_bad_paging_parameters_are_422_naming_them(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = api.client.get("/api/v1/job-types", params=params, headers=api.auth("viewer"))

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


def test_the_openapi_document_describes_the_paging_parameters() -> None:
    operation = create_app(None).openapi()["paths"]["/api/v1/job-types"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}

    limit = parameters["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 500, 100)
    before = parameters["before"]["schema"]
    strings = [s for s in before.get("anyOf", [before]) if s.get("type") == "string"]
    assert strings and strings[0]["maxLength"] >= 36 + 1 + 512
    assert strings[0]["pattern"].startswith("^[^:")
    assert "next" in parameters["before"]["description"]
