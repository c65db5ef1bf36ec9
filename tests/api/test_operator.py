"""Operator endpoints in-process: who may call them, and problem documents for bad requests."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import update
from support.app import Api
from support.reports import new_completion, report
from support.tokens import database

from jobhooks.store.checkins import insert_checkins
from jobhooks.store.tables import runs

READS = [
    ("GET", "/api/v1/job-completions"),
    ("GET", "/api/v1/job-completions/01a20000-0000-7000-8000-000000000000"),
    ("GET", "/api/v1/handler-runs"),
    ("GET", "/api/v1/handlers"),
    ("GET", "/api/v1/job-types"),
]
WRITES = [
    ("POST", "/api/v1/handler-runs/01a20000-0000-7000-8000-000000000000/replay"),
    ("POST", "/api/v1/handlers/record/replay-dead"),
    ("POST", "/api/v1/admin/reload"),
]


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_an_agent_token_is_refused_403(api: Api, method: str, path: str) -> None:
    _problem(api.client.request(method, path, headers=api.auth("agent")), 403)


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_no_token_is_401(api: Api, method: str, path: str) -> None:
    _problem(api.client.request(method, path), 401)


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_viewer_may_not_change_anything(api: Api, method: str, path: str) -> None:
    _problem(api.client.request(method, path, headers=api.auth("viewer")), 403)


@pytest.mark.parametrize(("method", "path"), READS)
def test_a_viewer_may_read(api: Api, method: str, path: str) -> None:
    response = api.client.request(method, path, headers=api.auth("viewer"))

    assert response.status_code in (200, 404)
    if response.status_code == 404:
        _problem(response, 404)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/job-completions", {"limit": 0}, "limit"),
        ("/api/v1/job-completions", {"limit": 501}, "limit"),
        ("/api/v1/job-completions", {"agent_id": "not-a-guid"}, "agent_id"),
        ("/api/v1/job-completions", {"result": "Exploded"}, "result"),
        ("/api/v1/job-completions", {"since": "last tuesday"}, "since"),
        ("/api/v1/handler-runs", {"status": "sleeping"}, "status"),
        ("/api/v1/handler-runs", {"limit": "many"}, "limit"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(
    api: Api, path: str, params: dict[str, Any], field: str
) -> None:
    response = api.client.get(path, params=params, headers=api.auth("admin"))

    problem = _problem(response, 422)
    assert [error["field"] for error in problem["errors"]] == [field]


def test_unknown_things_are_404_problems(api: Api) -> None:
    admin = api.auth("admin")

    _problem(api.client.get("/api/v1/job-completions/nope", headers=admin), 404)
    _problem(api.client.post("/api/v1/handler-runs/nope/replay", headers=admin), 404)
    _problem(api.client.post(f"/api/v1/handler-runs/{'x' * 100}/replay", headers=admin), 404)
    _problem(api.client.get("/api/v1/no-such-endpoint", headers=admin), 404)


def test_a_wrong_method_is_a_405_problem(api: Api) -> None:
    _problem(api.client.put("/api/v1/handlers", headers=api.auth("admin")), 405)


def test_replaying_a_run_that_has_not_finished_is_409(api: Api) -> None:
    # A run another worker holds for an hour.
    with database(api.runtime.store) as engine, engine.begin() as connection:
        [receipt] = insert_checkins(
            connection,
            [new_completion("record", lease=3600)],
            time.time(),
            reserve=lambda count: ("another-worker", count),
        )
    run_id = receipt.runs[0].id

    response = api.client.post(f"/api/v1/handler-runs/{run_id}/replay", headers=api.auth("admin"))

    problem = _problem(response, 409)
    assert " is pending" in problem["detail"] or " is running" in problem["detail"]


def test_the_completions_list_filters_and_pages(api: Api) -> None:
    bodies = [report(job_result=result) for result in ("Failure", "Success", "Failure")]
    ids = [
        api.client.post("/api/v1/job-completions", json=b, headers=api.auth("agent")).json()["id"]
        for b in bodies
    ]
    admin = api.auth("admin")

    failures = api.client.get(
        "/api/v1/job-completions", params={"result": "failure"}, headers=admin
    )
    first = api.client.get("/api/v1/job-completions", params={"limit": 2}, headers=admin).json()
    rest = api.client.get(
        "/api/v1/job-completions", params={"limit": 2, "before": first["next"]}, headers=admin
    ).json()

    assert {c["id"] for c in failures.json()["items"]} == {ids[0], ids[2]}
    assert [c["id"] for c in first["items"]] == [ids[2], ids[1]]
    assert [c["id"] for c in rest["items"]] == [ids[0]]
    assert rest["next"] is None


@pytest.mark.parametrize("path", ["/api/v1/job-completions", "/api/v1/handler-runs"])
def test_an_empty_page_position_is_the_first_page(api: Api, path: str) -> None:
    """A form or a script that sends ``before=`` with nothing in it asks for the newest."""
    api.client.post("/api/v1/job-completions", json=report(), headers=api.auth("agent"))
    admin = api.auth("admin")

    first = [item["id"] for item in api.client.get(path, headers=admin).json()["items"]]
    empty = api.client.get(path, params={"before": ""}, headers=admin).json()["items"]

    assert first and [item["id"] for item in empty] == first  # a run's status may move


@pytest.mark.parametrize("path", ["/api/v1/job-completions", "/api/v1/handler-runs"])
@pytest.mark.parametrize("before", ["zzz", "0", "not-a-uuid-at-all"])
def test_a_page_position_that_is_no_id_is_refused_naming_it(
    api: Api, path: str, before: str
) -> None:
    """It used to be compared as text: "zzz" gave the newest rows, "0" none."""
    response = api.client.get(path, params={"before": before}, headers=api.auth("admin"))

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["before"]


@pytest.mark.parametrize("path", ["/api/v1/job-completions", "/api/v1/handler-runs"])
def test_an_id_in_capitals_is_the_same_page_position(api: Api, path: str) -> None:
    """A UUID is the same in either case (Keyfactor Command writes them in capitals), and
    the position's pattern takes both: in capitals it answered an empty page."""
    for _ in range(3):
        api.client.post("/api/v1/job-completions", json=report(), headers=api.auth("agent"))
    admin = api.auth("admin")
    position = api.client.get(path, params={"limit": 1}, headers=admin).json()["next"]

    pages = [
        api.client.get(path, params={"limit": 500, "before": before}, headers=admin).json()
        for before in (position, position.upper())
    ]

    lower, upper = ([item["id"] for item in page["items"]] for page in pages)
    assert len(lower) >= 2 and upper == lower


def test_an_id_in_capitals_names_the_same_completion_and_run(api: Api) -> None:
    with database(api.runtime.store) as engine, engine.begin() as connection:
        [receipt] = insert_checkins(connection, [new_completion("record")], time.time())
        run_id = receipt.runs[0].id
        connection.execute(update(runs).where(runs.c.id == run_id).values(status="dead"))
    admin = api.auth("admin")

    shown = api.client.get(f"/api/v1/job-completions/{receipt.id.upper()}", headers=admin)
    replayed = api.client.post(f"/api/v1/handler-runs/{run_id.upper()}/replay", headers=admin)

    assert shown.status_code == 200, shown.text
    assert shown.json()["id"] == receipt.id
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"id": run_id, "previous_status": "dead", "status": "pending"}


def test_replaying_the_dead_runs_of_a_handler_nobody_knows_is_a_404(api: Api) -> None:
    response = api.client.post(
        "/api/v1/handlers/no-such-handler/replay-dead", headers=api.auth("admin")
    )

    assert response.status_code == 404, response.text
    assert "no handler 'no-such-handler'" in response.json()["detail"]
    known = api.client.post("/api/v1/handlers/record/replay-dead", headers=api.auth("admin"))
    assert known.json() == {"handler": "record", "replayed": 0}
