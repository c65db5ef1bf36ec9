"""The whole pipeline against one real ``jobhooks serve`` process.

Check-in -> durable store -> worker -> handlers, watched through the operator
API the way an operator would: retries, dead runs, replays, job-type
matching, idempotent repeats, the seed's PascalCase body and the computed
retry count.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from support.pipeline import Pipeline
from support.reports import (
    AGENT_A,
    AGENT_B,
    DOOMED,
    FLAKY,
    GATED_MANY,
    GATED_ONE,
    INVENTORY,
    MANAGEMENT,
    report,
)


def test_a_check_in_is_stored_then_its_handlers_run(pipeline: Pipeline) -> None:
    body = report(job_type_id=INVENTORY, job_history_id=None)
    response = pipeline.post(body)

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"id", "duplicate", "handler_runs"}
    assert answer["duplicate"] is False
    assert sorted(run["handler"] for run in answer["handler_runs"]) == [
        "record-all",
        "record-inventory",
    ]
    for run in answer["handler_runs"]:
        assert set(run) == {"id", "handler", "status", "trigger"}
        assert run["status"] == "pending"
        assert run["trigger"] is None  # registered without `when`: always

    # Acknowledged means committed: the completion is there at once.
    stored = pipeline.detail(answer["id"])
    assert stored["agent_id"] == str(AGENT_A)
    assert stored["job_id"] == body["job_id"]
    assert stored["job_result"] == "Failure"
    assert stored["message"] == "Access denied to store /etc/ssl"

    detail = pipeline.settled(answer["id"])
    runs = {run["handler"]: run for run in detail["handler_runs"]}
    assert {run["id"] for run in runs.values()} == {run["id"] for run in answer["handler_runs"]}
    for run in runs.values():
        assert run["status"] == "succeeded"
        assert run["completion_id"] == answer["id"]
        assert [a["outcome"] for a in run["attempt_history"]] == ["succeeded"]
    assert pipeline.trace("all.log").count(answer["id"]) == 1
    assert pipeline.trace("inventory.log").count(answer["id"]) == 1

    listed = pipeline.admin.get("/api/v1/job-completions", params={"job_id": body["job_id"]})
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [answer["id"]]
    by_agent = pipeline.admin.get("/api/v1/job-completions", params={"agent_id": str(AGENT_A)})
    assert answer["id"] in {item["id"] for item in by_agent.json()["items"]}
    succeeded = pipeline.admin.get(
        "/api/v1/handler-runs", params={"status": "succeeded", "handler": "record-inventory"}
    )
    assert succeeded.status_code == 200
    assert runs["record-inventory"]["id"] in {item["id"] for item in succeeded.json()["items"]}


def test_job_types_choose_the_handlers(pipeline: Pipeline) -> None:
    inventory = pipeline.check_in(report(job_type_id=INVENTORY))
    management = pipeline.check_in(report(job_type="Management", job_type_id=MANAGEMENT))

    assert {r["handler"] for r in inventory["handler_runs"]} == {"record-all", "record-inventory"}
    assert {r["handler"] for r in management["handler_runs"]} == {"record-all"}
    pipeline.settled(inventory["id"])
    pipeline.settled(management["id"])
    assert management["id"] in pipeline.trace("all.log")
    assert management["id"] not in pipeline.trace("inventory.log")
    assert inventory["id"] in pipeline.trace("inventory.log")


def test_a_failing_handler_is_retried_until_it_succeeds(pipeline: Pipeline) -> None:
    answer = pipeline.check_in(report(job_type_id=FLAKY))

    detail = pipeline.settled(answer["id"])
    flaky = next(run for run in detail["handler_runs"] if run["handler"] == "flaky")
    assert flaky["status"] == "succeeded"
    assert flaky["attempts"] == 3
    history = flaky["attempt_history"]
    assert [a["number"] for a in history] == [1, 2, 3]
    assert [a["outcome"] for a in history] == ["failed", "failed", "succeeded"]
    assert "flaky failure 1 of 2" in history[0]["error"]
    assert "flaky failure 2 of 2" in history[1]["error"]
    assert "RuntimeError" in history[0]["traceback"]
    # Each retry waited for its backoff after the previous attempt ended.
    assert history[1]["started_at"] >= history[0]["finished_at"] + 0.05 * 0.75


def test_a_run_is_dead_after_max_attempts_and_a_replay_runs_it_again(
    pipeline: Pipeline,
) -> None:
    answer = pipeline.check_in(report(job_type_id=GATED_ONE))
    run_id = next(r["id"] for r in answer["handler_runs"] if r["handler"] == "gated-one")

    detail = pipeline.settled(answer["id"])
    gated = next(run for run in detail["handler_runs"] if run["id"] == run_id)
    assert gated["status"] == "dead"
    assert gated["attempts"] == gated["max_attempts"] == 3
    assert [a["outcome"] for a in gated["attempt_history"]] == ["failed", "failed", "failed"]
    assert all("gate gate-one is closed" in a["error"] for a in gated["attempt_history"])
    assert "gate gate-one is closed" in gated["last_error"]
    assert pipeline.trace("gated-one.log") == [answer["id"]] * 3
    dead = pipeline.admin.get("/api/v1/handler-runs", params={"status": "dead"}).json()["items"]
    assert run_id in {run["id"] for run in dead}

    # Running or pending runs cannot be replayed; unknown ones are not found.
    assert pipeline.admin.post(f"/api/v1/handler-runs/{uuid.uuid4()}/replay").status_code == 404
    assert pipeline.viewer.post(f"/api/v1/handler-runs/{run_id}/replay").status_code == 403

    (pipeline.directory / "gate-one").touch()
    replayed = pipeline.admin.post(f"/api/v1/handler-runs/{run_id}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"id": run_id, "previous_status": "dead", "status": "pending"}

    detail = pipeline.settled(answer["id"])
    gated = next(run for run in detail["handler_runs"] if run["id"] == run_id)
    assert gated["status"] == "succeeded"
    assert gated["total_attempts"] == 4
    outcomes = [a["outcome"] for a in gated["attempt_history"]]
    assert outcomes == ["failed", "failed", "failed", "succeeded"]
    assert pipeline.trace("gated-one.log") == [answer["id"]] * 4


def test_replay_dead_runs_every_dead_run_of_a_handler_again(pipeline: Pipeline) -> None:
    answers = [pipeline.check_in(report(job_type_id=GATED_MANY)) for _ in range(3)]
    for answer in answers:
        detail = pipeline.settled(answer["id"])
        statuses = {run["handler"]: run["status"] for run in detail["handler_runs"]}
        assert statuses == {"record-all": "succeeded", "gated-many": "dead"}

    (pipeline.directory / "gate-many").touch()
    response = pipeline.admin.post("/api/v1/handlers/gated-many/replay-dead")
    assert response.status_code == 200, response.text
    assert response.json() == {"handler": "gated-many", "replayed": 3}

    for answer in answers:
        detail = pipeline.settled(answer["id"])
        assert {run["status"] for run in detail["handler_runs"]} == {"succeeded"}
        assert pipeline.trace("gated-many.log").count(answer["id"]) == 3
    again = pipeline.admin.post("/api/v1/handlers/gated-many/replay-dead")
    assert again.json() == {"handler": "gated-many", "replayed": 0}


def test_a_repeat_with_the_same_idempotency_key_answers_the_original(pipeline: Pipeline) -> None:
    body = report()
    key = f"orch01-{uuid.uuid4()}"
    first = pipeline.check_in(body, key)
    repeat = pipeline.check_in(body, key)
    other_agent = pipeline.agent_b.post(
        "/api/v1/job-completions",
        json=report(agent_id=AGENT_B),
        headers={"Idempotency-Key": key},
    )

    assert first["duplicate"] is False
    assert repeat["id"] == first["id"]
    assert repeat["duplicate"] is True
    assert [r["id"] for r in repeat["handler_runs"]] == [r["id"] for r in first["handler_runs"]]
    assert other_agent.status_code == 202
    assert other_agent.json()["duplicate"] is False, "a key is scoped to its agent"
    assert other_agent.json()["id"] != first["id"]
    pipeline.settled(first["id"])
    pipeline.settled(other_agent.json()["id"])
    # A repeat after the runs finished still answers the original, and runs nothing.
    late = pipeline.check_in(body, key)
    assert late["id"] == first["id"] and late["duplicate"] is True
    assert {run["status"] for run in late["handler_runs"]} == {"succeeded"}
    assert pipeline.trace("all.log").count(first["id"]) == 1
    assert pipeline.trace("inventory.log").count(first["id"]) == 1


def test_a_repeat_of_the_same_job_history_id_answers_the_original(pipeline: Pipeline) -> None:
    history_id = uuid.uuid4().int % 10**9
    first = pipeline.check_in(report(job_history_id=history_id))
    # A retransmission of the same run of the job: same agent, same job history id.
    repeat = pipeline.check_in(report(job_history_id=history_id, message="sent again"))
    other_agent = pipeline.agent_b.post(
        "/api/v1/job-completions", json=report(agent_id=AGENT_B, job_history_id=history_id)
    )

    assert repeat["id"] == first["id"]
    assert repeat["duplicate"] is True
    assert [r["id"] for r in repeat["handler_runs"]] == [r["id"] for r in first["handler_runs"]]
    assert other_agent.json()["duplicate"] is False
    pipeline.settled(first["id"])
    assert pipeline.detail(first["id"])["message"] == "Access denied to store /etc/ssl"
    assert pipeline.trace("all.log").count(first["id"]) == 1


def test_two_reports_without_a_key_or_history_id_are_two_completions(pipeline: Pipeline) -> None:
    body = report()
    first = pipeline.check_in(body)
    second = pipeline.check_in(body)

    assert first["id"] != second["id"]
    assert second["duplicate"] is False
    for answer in (first, second):
        pipeline.settled(answer["id"])
        assert pipeline.trace("all.log").count(answer["id"]) == 1
    listed = pipeline.admin.get("/api/v1/job-completions", params={"job_id": body["job_id"]})
    assert {item["id"] for item in listed.json()["items"]} == {first["id"], second["id"]}


def test_the_seeds_pascal_case_body_is_accepted(pipeline: Pipeline) -> None:
    job_id = uuid.uuid4()
    body = {
        "AgentId": str(AGENT_A),
        "Username": "EXAMPLE\\orch01",
        "ClientMachine": "orch01.example.com",
        "JobId": str(job_id),
        "JobType": "Inventory",
        "JobTypeId": str(INVENTORY).upper(),
        "OperationType": "CREATE_ADD",
        "JobResult": "warning",
        "CertificateId": 4471,
        "RequestTimestamp": "2026-11-22T11:00:00+01:00",
        "CurrentRetryCount": 3,
        "JobHistoryId": None,
        "Message": "Store /etc/ssl has 2 expiring certificates",
    }
    answer = pipeline.check_in(body)

    assert {r["handler"] for r in answer["handler_runs"]} == {"record-all", "record-inventory"}
    stored = pipeline.detail(answer["id"])
    assert stored["job_id"] == str(job_id)
    assert stored["job_type_id"] == str(INVENTORY)
    assert stored["operation_type"] == "CreateAdd"
    assert stored["job_result"] == "Warning"
    assert stored["certificate_id"] == 4471
    assert stored["current_retry_count"] == 3
    assert stored["retry_count_computed"] is False
    assert stored["request_timestamp"] == datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()


def test_an_omitted_retry_count_counts_the_jobs_consecutive_failures(pipeline: Pipeline) -> None:
    job_id = uuid.uuid4()
    results = ["Failure", "Failure", "Failure", "Success", "Failure", "Warning", "Failure"]
    counts = []
    for result in results:
        answer = pipeline.check_in(
            report(job_id=job_id, job_result=result, current_retry_count=None)
        )
        stored = pipeline.detail(answer["id"])
        assert stored["retry_count_computed"] is True
        counts.append(stored["current_retry_count"])
    other_job = pipeline.detail(pipeline.check_in(report(current_retry_count=None))["id"])

    assert counts == [0, 1, 2, 3, 0, 1, 0]
    assert other_job["current_retry_count"] == 0


def test_operator_endpoints_need_an_operator_token(pipeline: Pipeline) -> None:
    assert pipeline.agent.get("/api/v1/job-completions").status_code == 403
    assert pipeline.agent.get("/api/v1/handler-runs").status_code == 403
    assert pipeline.agent.post("/api/v1/handlers/doomed/replay-dead").status_code == 403
    assert pipeline.viewer.get("/api/v1/handler-runs").status_code == 200
    assert pipeline.viewer.post("/api/v1/handlers/doomed/replay-dead").status_code == 403
    with httpx.Client(base_url=pipeline.server.url) as anonymous:
        response = anonymous.get("/api/v1/handlers")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_handlers_list_shows_registrations_and_their_run_counts(pipeline: Pipeline) -> None:
    answer = pipeline.check_in(report(job_type_id=DOOMED))
    pipeline.settled(answer["id"])

    body = pipeline.admin.get("/api/v1/handlers").json()
    handlers = {item["name"]: item for item in body["items"]}
    assert list(handlers) == [
        "record-all",
        "record-inventory",
        "flaky",
        "gated-one",
        "gated-many",
        "doomed",
    ]
    assert handlers["record-all"]["all_job_types"] is True
    assert handlers["doomed"]["max_attempts"] == 2
    assert handlers["doomed"]["runs"]["dead"] >= 1
    assert body["last_reload"]["applied"] is True


def test_health_readiness_and_metrics(pipeline: Pipeline) -> None:
    pipeline.check_in(report())
    with httpx.Client(base_url=pipeline.server.url) as anonymous:
        health = anonymous.get("/healthz")
        ready = anonymous.get("/readyz")
        metrics = anonymous.get("/metrics")

    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    readiness = ready.json()
    assert readiness["status"] == "ok"
    assert readiness["database"] == "ok"
    assert readiness["config"]["handlers"] == 6
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in metrics.text.splitlines()}
    assert "jobhooks_completions_total" in names
    assert "jobhooks_runs_pending" in names
    assert {"jobhooks_store_commits_total", "jobhooks_store_writes_total"} <= names
    completions = [
        line
        for line in metrics.text.splitlines()
        if line.startswith('jobhooks_completions_total{result="Failure",source="check-in"}')
    ]
    assert completions and float(completions[0].rsplit(" ", 1)[1]) >= 1


def test_bad_input_over_http_is_refused_with_a_problem_and_stores_nothing(
    pipeline: Pipeline,
) -> None:
    job_id = str(uuid.uuid4())
    headers = {"Content-Type": "application/json"}
    cases = {
        400: pipeline.agent.post(
            "/api/v1/job-completions", content=b'{"job_id": "' + job_id.encode(), headers=headers
        ),
        413: pipeline.post(report(job_id=job_id, message="x" * 70_000)),
        422: pipeline.post(report(job_id=job_id, job_result="Exploded")),
        403: pipeline.post(report(AGENT_B, job_id=job_id)),
    }

    for status, response in cases.items():
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
    listed = pipeline.admin.get("/api/v1/job-completions", params={"job_id": job_id})
    assert listed.json()["items"] == []
