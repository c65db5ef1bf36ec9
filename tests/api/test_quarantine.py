"""A registration with problems at start: check-ins go on, its runs are held and reported,
and a reload that fixes it lets them run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support import handlers
from support.app import Api, TestClient
from support.handlers import read_lines
from support.reports import AGENT_A, report
from support.server import wait_for, write_config
from support.tokens import make_token

from jobhooks.registry import load_for_serving
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app

GOOD = """
[[handlers]]
name = "record"
type = "support.handlers:Appender"
job_types = "*"
properties = {{ path = "{directory}/record.log" }}
"""
BROKEN = """
[[handlers]]
name = "later"
type = "support.handlers:Appender"
job_types = "*"
max_attempts = 2
properties = {{ path = "{directory}/later.log", colour = "blue" }}
"""


@pytest.fixture
def quarantined(tmp_path: Path) -> Iterator[Api]:
    """The app started on a file whose second registration has an unknown property."""
    config = write_config(tmp_path, (GOOD + BROKEN).format(directory=tmp_path))
    runtime = Runtime(load_for_serving(config), config)
    tokens = {
        "admin": make_token(runtime.store, "admin"),
        "agent": make_token(runtime.store, "agent", AGENT_A),
    }
    with TestClient(create_app(runtime)) as client:
        yield Api(client, runtime, tmp_path, tokens)


def _run(api: Api, completion_id: str, handler: str) -> dict[str, Any]:
    detail = api.client.get(f"/api/v1/job-completions/{completion_id}", headers=api.auth("admin"))
    run: dict[str, Any] = next(r for r in detail.json()["handler_runs"] if r["handler"] == handler)
    return run


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


def test_check_ins_go_on_and_the_quarantined_registration_gets_held_runs(
    quarantined: Api,
) -> None:
    api = quarantined
    answer = api.client.post("/api/v1/job-completions", json=report(), headers=api.auth("agent"))
    assert answer.status_code == 202, answer.text
    assert [(r["handler"], r["status"]) for r in answer.json()["handler_runs"]] == [
        ("record", "pending"),
        ("later", "held"),
    ]
    completion_id = answer.json()["id"]
    wait_for(lambda: _run(api, completion_id, "record")["status"] == "succeeded", 10, "record")
    assert _run(api, completion_id, "later")["status"] == "held"

    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    (entry,) = ready.json()["registrations"]
    assert entry["name"] == "later" and entry["state"] == "quarantined"
    assert entry["holds_runs"] is True
    assert "property colour: unknown property" in entry["problems"][0]

    metrics = api.client.get("/metrics").text
    assert _metric(metrics, "jobhooks_registrations_quarantined") == 1
    assert _metric(metrics, "jobhooks_runs_held") == 1
    assert (
        _metric(metrics, 'jobhooks_registration_problems{registration="later",state="quarantined"}')
        == 1
    )

    held = api.client.get("/api/v1/handler-runs?status=held", headers=api.auth("admin")).json()
    (run,) = held["items"]
    refused = api.client.post(f"/api/v1/handler-runs/{run['id']}/replay", headers=api.auth("admin"))
    assert refused.status_code == 409
    assert "held: its registration is quarantined" in refused.json()["detail"]


def test_a_reload_that_fixes_the_registration_runs_its_held_runs(quarantined: Api) -> None:
    api = quarantined
    answer = api.client.post("/api/v1/job-completions", json=report(), headers=api.auth("agent"))
    completion_id = answer.json()["id"]
    config = api.directory / "jobhooks.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(', colour = "blue"', ""), encoding="utf-8"
    )

    reloaded = api.client.post("/api/v1/admin/reload", headers=api.auth("admin"))
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["registrations"] == []
    wait_for(lambda: _run(api, completion_id, "later")["status"] == "succeeded", 10, "later")
    assert [line.split()[0] for line in read_lines(api.directory / "later.log")] == [completion_id]
    assert api.client.get("/readyz").json()["registrations"] == []
    assert _metric(api.client.get("/metrics").text, "jobhooks_runs_held") == 0


@pytest.mark.parametrize(
    "content",
    [b'[[handlers]]\nname = "caf\xe9"\n', b"x = " + b"[" * 3000 + b"]" * 3000],
    ids=["latin-1", "nested"],
)
def test_a_file_that_cannot_be_read_is_refused_whole_and_the_running_one_stays(
    quarantined: Api, content: bytes
) -> None:
    api = quarantined
    (api.directory / "jobhooks.toml").write_bytes(content)

    refused = api.client.post("/api/v1/admin/reload", headers=api.auth("admin"))

    assert refused.status_code == 422, refused.text
    assert "jobhooks.toml" in str(refused.json()), refused.json()
    assert api.client.get("/readyz").json()["config"]["last_reload_applied"] is False
    handlers = api.client.get("/api/v1/handlers", headers=api.auth("admin")).json()
    assert [h["name"] for h in handlers["items"]] == ["record"]


def test_check_ins_are_answered_while_a_reload_waits_on_a_handlers_setup(
    quarantined: Api,
) -> None:
    """A reload imports handler modules and runs their ``setup()``: one that waits on a slow
    service must not hold the check-ins (the check-in path of every orchestrator) meanwhile."""
    api = quarantined
    for event in (handlers.SETUP_ENTERED, handlers.SETUP_MAY_RETURN, handlers.SETUP_RETURNED):
        event.clear()
    config = api.directory / "jobhooks.toml"
    config.write_text(
        GOOD.format(directory=api.directory)
        + '\n[[handlers]]\nname = "slow"\ntype = "support.handlers:SlowSetup"\njob_types = "*"\n',
        encoding="utf-8",
    )
    with ThreadPoolExecutor(1) as pool:
        reloading = pool.submit(api.client.post, "/api/v1/admin/reload", headers=api.auth("admin"))
        assert handlers.SETUP_ENTERED.wait(10), "the reload never reached the handler's setup()"

        answer = api.client.post(
            "/api/v1/job-completions", json=report(), headers=api.auth("agent")
        )
        answered_during_setup = not handlers.SETUP_RETURNED.is_set()
        handlers.SETUP_MAY_RETURN.set()
        reloaded = reloading.result(timeout=30)

    assert answer.status_code == 202, answer.text
    assert answered_during_setup, "the check-in waited for the reload's setup() to return"
    assert reloaded.status_code == 200, reloaded.text
    listed = api.client.get("/api/v1/handlers", headers=api.auth("admin")).json()
    assert sorted(h["name"] for h in listed["items"]) == ["record", "slow"]
