"""Notification rules through the API: the runs a check-in creates say why they exist, and a
completion whose registration did not run says why not, in its detail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.app import Api, TestClient
from support.reports import AGENT_A, report
from support.server import write_config
from support.tokens import make_token

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app

PATH = "/api/v1/job-completions"


@pytest.fixture
def paging(tmp_path: Path) -> Iterator[Api]:
    """An app with "page" (a streak of 2, then recovered) and "audit" (every completion)."""
    config = write_config(
        tmp_path,
        """
        [[handlers]]
        name = "page"
        type = "log"
        job_types = "*"
        when = ["failure-streak", "recovered"]
        streak = 2

        [[handlers]]
        name = "audit"
        type = "log"
        job_types = "*"
        """,
    )
    runtime = Runtime(load(config), config, with_worker=False)
    tokens = {
        "admin": make_token(runtime.store, "admin"),
        "agent": make_token(runtime.store, "agent", AGENT_A),
    }
    with TestClient(create_app(runtime)) as client:
        yield Api(client, runtime, tmp_path, tokens)


def _post(api: Api, job: uuid.UUID, result: str) -> dict[str, Any]:
    body = report(job_id=job, job_result=result, current_retry_count=None)
    response = api.client.post(PATH, json=body, headers=api.auth("agent"))
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _runs(answer: dict[str, Any]) -> dict[str, Any]:
    return {run["handler"]: run["trigger"] for run in answer["handler_runs"]}


def test_each_run_says_why_it_exists_and_a_skipped_registration_says_why_not(
    paging: Api,
) -> None:
    job = uuid.uuid4()
    first, second, recovered = (_post(paging, job, r) for r in ("Failure", "Failure", "Success"))

    assert _runs(first) == {"audit": None}
    streak = _runs(second)["page"]
    assert streak["kind"] == "failure-streak" and streak["streak"] == 2
    assert streak["reason"].startswith("2nd consecutive failure of Inventory job ")
    assert streak["since"].endswith("Z")
    assert _runs(recovered)["page"]["kind"] == "recovered"

    detail = paging.client.get(f"{PATH}/{first['id']}", headers=paging.auth("admin")).json()
    assert detail["not_sent"] == [
        {"handler": "page", "reason": "not sent: 1st consecutive failure, fires at 2"}
    ]
    assert [run["handler"] for run in detail["handler_runs"]] == ["audit"]
    fired = paging.client.get(f"{PATH}/{second['id']}", headers=paging.auth("admin")).json()
    assert fired["not_sent"] == []
    [page] = [run for run in fired["handler_runs"] if run["handler"] == "page"]
    assert page["trigger"] == streak

    runs = paging.client.get(
        "/api/v1/handler-runs", params={"handler": "page"}, headers=paging.auth("admin")
    ).json()["items"]
    assert [run["trigger"]["kind"] for run in runs] == ["recovered", "failure-streak"]
    handlers = paging.client.get("/api/v1/handlers", headers=paging.auth("admin")).json()
    registrations = {h["name"]: h for h in handlers["items"]}
    assert registrations["page"]["when"] == ["failure-streak", "recovered"]
    assert registrations["page"]["streak"] == 2
    # A streak length means nothing without failure-streak: none is shown.
    assert registrations["audit"]["when"] == ["always"]
    assert registrations["audit"]["streak"] is None
