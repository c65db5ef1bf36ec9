"""``POST /api/v1/job-completions`` in-process: the answer, and every way to get it wrong.

A rejected report is answered with a problem document (``application/problem+json``)
that says what is wrong, and stores nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.app import Api
from support.reports import AGENT_B, report
from support.tokens import make_token_info, revoke

from jobhooks.errors import CommitUnconfirmed
from jobhooks.store import writer

PATH = "/api/v1/job-completions"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["title"], str)
    return body


def test_a_valid_report_is_accepted_with_its_pending_runs(api: Api) -> None:
    response = api.client.post(PATH, json=report(), headers=api.auth("agent"))

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"id", "duplicate", "handler_runs"}
    assert answer["duplicate"] is False
    [run] = answer["handler_runs"]
    assert run["handler"] == "record" and run["status"] == "pending"
    assert [c["id"] for c in api.stored()] == [answer["id"]]


def test_an_admin_token_may_report_for_any_agent(api: Api) -> None:
    response = api.client.post(PATH, json=report(AGENT_B), headers=api.auth("admin"))

    assert response.status_code == 202


MISSING = object()


def _with(**changes: Any) -> dict[str, Any]:
    body = report()
    for key, value in changes.items():
        if value is MISSING:
            body.pop(key)
        else:
            body[key] = value
    return body


INVALID_FIELDS = {
    "job_result is a list": (_with(job_result=[]), ["job_result"]),
    "job_result unknown name": (_with(job_result="Exploded"), ["job_result"]),
    "job_result out of range": (_with(job_result=7), ["job_result"]),
    "operation_type unknown name": (_with(operation_type="Teleport"), ["operation_type"]),
    "certificate_id not a number": (_with(certificate_id="abc"), ["certificate_id"]),
    "negative retry count": (_with(current_retry_count=-1), ["current_retry_count"]),
    "retry count a float": (_with(current_retry_count=1.5), ["current_retry_count"]),
    "retry count over 32 bits": (_with(current_retry_count=2**31), ["current_retry_count"]),
    "retry count in other digits": (
        _with(current_retry_count="\u0661\u0662"),
        ["current_retry_count"],
    ),
    "certificate id over 64 bits": (_with(certificate_id=2**63), ["certificate_id"]),
    "username a number": (_with(username=5), ["username"]),
    "bad timestamp": (_with(request_timestamp="yesterday"), ["request_timestamp"]),
    "agent_id not a GUID": (_with(agent_id="not-a-guid"), ["agent_id"]),
    "job_id truncated GUID": (_with(job_id="9f0e"), ["job_id"]),
    "job_type_id empty": (_with(job_type_id=""), ["job_type_id"]),
    "job_type missing": (_with(job_type=MISSING), ["job_type"]),
    "job_id missing": (_with(job_id=MISSING), ["job_id"]),
    "job_result null": (_with(job_result=None), ["job_result"]),
    "unknown field": (_with(Colour="blue"), ["Colour"]),
    "set by jobhooks": (_with(completion_id="mine"), ["completion_id"]),
    "several at once": (
        _with(job_id="x", job_result="Nope", job_type=MISSING),
        ["job_id", "job_result", "job_type"],
    ),
    "everything missing": ({}, ["agent_id", "job_id", "job_type", "job_type_id", "job_result"]),
}


@pytest.fixture
def nothing_stored(api: Api) -> Iterator[Api]:
    """The test's requests must leave the store empty."""
    yield api
    assert api.stored() == []
    assert api.runtime.store.reads.backlog()[0] == 0


@pytest.mark.parametrize(("body", "fields"), INVALID_FIELDS.values(), ids=INVALID_FIELDS.keys())
def test_invalid_fields_are_422_naming_each_field(
    nothing_stored: Api, body: dict[str, Any], fields: list[str]
) -> None:
    response = nothing_stored.client.post(PATH, json=body, headers=nothing_stored.auth("agent"))

    problem = _problem(response, 422)
    named = [error["field"] for error in problem["errors"]]
    assert sorted(named) == sorted(fields)
    assert all(error["message"] for error in problem["errors"])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_the_largest_counts_and_ids_are_stored_and_one_more_is_refused_on_both_databases(
    api: Api,
) -> None:
    largest = _with(current_retry_count=2**31 - 1, certificate_id=2**63 - 1, job_history_id=1)
    refused = _with(current_retry_count=2**31)

    stored = api.client.post(PATH, json=largest, headers=api.auth("agent"))
    too_large = api.client.post(PATH, json=refused, headers=api.auth("agent"))

    assert stored.status_code == 202, stored.text
    [error] = _problem(too_large, 422)["errors"]
    assert error["field"] == "current_retry_count" and str(2**31 - 1) in error["message"]
    assert api.client.get("/readyz").status_code == 200, "a refused report is not a store failure"
    [kept] = api.stored()
    assert (kept["current_retry_count"], kept["certificate_id"]) == (2**31 - 1, 2**63 - 1)


def test_the_error_says_what_is_accepted(nothing_stored: Api) -> None:
    response = nothing_stored.client.post(
        PATH, json=_with(job_result="Exploded"), headers=nothing_stored.auth("agent")
    )

    [error] = _problem(response, 422)["errors"]
    assert "Failure (4)" in error["message"]


@pytest.mark.parametrize(
    "content", [b'{"agent_id": ', b"", b"\xff\xfe not utf-8", b"{'single': 'quotes'}"]
)
def test_a_body_that_is_not_json_is_400(nothing_stored: Api, content: bytes) -> None:
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}

    response = nothing_stored.client.post(PATH, content=content, headers=headers)

    _problem(response, 400)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('"certificate_id": 1180591620717411303424', "certificate_id"),  # 2**70, past 64 bits
        ('"job_history_id": 1e400', "job_history_id"),  # infinite as a double
        ('"current_retry_count": NaN', "current_retry_count"),  # JavaScript's, not JSON's
    ],
)
def test_numbers_no_column_can_hold_are_422_naming_the_field(
    nothing_stored: Api, raw: str, field: str
) -> None:
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}
    content = json.dumps(report()).removesuffix("}") + ", " + raw + "}"

    response = nothing_stored.client.post(PATH, content=content, headers=headers)

    [error] = _problem(response, 422)["errors"]
    assert error["field"] == field


@pytest.mark.parametrize("field", ["client_machine", "message", "job_type", "username"])
def test_a_nul_character_in_a_text_field_is_422_naming_it(nothing_stored: Api, field: str) -> None:
    response = nothing_stored.client.post(
        PATH, json=_with(**{field: "before\u0000after"}), headers=nothing_stored.auth("agent")
    )

    [error] = _problem(response, 422)["errors"]
    assert error["field"] == field and "NUL" in error["message"]


def test_the_six_characters_backslash_u0000_in_a_message_are_only_text(api: Api) -> None:
    text = "path C:\\u0000\\certs"  # a backslash, then "u0000": no NUL character

    response = api.client.post(PATH, json=_with(message=text), headers=api.auth("agent"))

    assert response.status_code == 202, response.text
    assert api.stored()[0]["message"] == text


def test_a_body_that_starts_with_a_byte_order_mark_is_read(api: Api) -> None:
    headers = {**api.auth("agent"), "Content-Type": "application/json"}
    content = "\ufeff".encode() + json.dumps(report()).encode()

    response = api.client.post(PATH, content=content, headers=headers)

    assert response.status_code == 202, response.text
    assert len(api.stored()) == 1


@pytest.mark.parametrize("body", [[report()], "a string", 42, None])
def test_json_that_is_not_an_object_is_422(nothing_stored: Api, body: Any) -> None:
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}

    response = nothing_stored.client.post(PATH, content=json.dumps(body), headers=headers)

    _problem(response, 422)


def test_a_body_over_64_kib_is_413(nothing_stored: Api) -> None:
    body = _with(message="x" * (64 * 1024))

    response = nothing_stored.client.post(PATH, json=body, headers=nothing_stored.auth("agent"))

    _problem(response, 413)


def test_a_chunked_body_over_64_kib_is_413(nothing_stored: Api) -> None:
    data = json.dumps(_with(message="x" * (70 * 1024))).encode()
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    response = nothing_stored.client.post(PATH, content=chunks(), headers=headers)

    _problem(response, 413)


def test_a_body_just_under_the_limit_is_fine(api: Api) -> None:
    body = _with(message="")
    room = 64 * 1024 - len(json.dumps(body).encode())
    body["message"] = "x" * min(room, 32_768)

    response = api.client.post(PATH, json=body, headers=api.auth("agent"))

    assert response.status_code == 202


def test_a_body_that_is_not_json_by_its_type_is_415(nothing_stored: Api) -> None:
    headers = {**nothing_stored.auth("agent"), "Content-Type": "text/plain"}

    response = nothing_stored.client.post(PATH, content=json.dumps(report()), headers=headers)

    _problem(response, 415)


def test_an_idempotency_key_over_200_characters_is_400(nothing_stored: Api) -> None:
    headers = {**nothing_stored.auth("agent"), "Idempotency-Key": "k" * 201}

    response = nothing_stored.client.post(PATH, json=report(), headers=headers)

    _problem(response, 400)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "jh_abc", "Bearer jh_unknown_token"],
)
def test_no_or_an_unknown_token_is_401(nothing_stored: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = nothing_stored.client.post(PATH, json=report(), headers=headers)

    _problem(response, 401)


def test_a_report_for_another_agent_is_403(nothing_stored: Api) -> None:
    response = nothing_stored.client.post(
        PATH, json=report(AGENT_B), headers=nothing_stored.auth("agent")
    )

    problem = _problem(response, 403)
    assert [e["field"] for e in problem["errors"]] == ["agent_id"]


def test_a_viewer_token_cannot_report(nothing_stored: Api) -> None:
    response = nothing_stored.client.post(
        PATH, json=report(), headers=nothing_stored.auth("viewer")
    )

    _problem(response, 403)


def test_a_revoked_token_is_401(nothing_stored: Api) -> None:
    store = nothing_stored.runtime.store
    token, info = make_token_info(store, "agent", AGENT_B)
    assert revoke(store, info.id)

    response = nothing_stored.client.post(
        PATH, json=report(AGENT_B), headers={"Authorization": f"Bearer {token}"}
    )

    _problem(response, 401)


@pytest.mark.parametrize("field", ["message", "job_type", "username", "client_machine"])
def test_half_a_surrogate_pair_is_422_not_a_server_error(nothing_stored: Api, field: str) -> None:
    # Valid JSON ("\ud800" is a legal escape) that no database can store as text.
    content = json.dumps(_with(**{field: "broken \ud800 text"}))
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}

    response = nothing_stored.client.post(PATH, content=content, headers=headers)

    problem = _problem(response, 422)
    assert [error["field"] for error in problem["errors"]] == [field]


def test_a_field_name_with_half_a_surrogate_pair_is_quoted_back_safely(nothing_stored: Api) -> None:
    content = json.dumps({**report(), "odd\udc80key": 1})
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}

    response = nothing_stored.client.post(PATH, content=content, headers=headers)

    problem = _problem(response, 422)
    assert [error["message"] for error in problem["errors"]] == ["unknown field"]


def test_a_report_the_database_did_not_confirm_is_answered_503_saying_it_may_be_stored(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unconfirmed(_completion: object) -> None:
        raise CommitUnconfirmed("the database did not confirm the write; it may have been stored")

    monkeypatch.setattr(api.runtime.store, "check_in", unconfirmed)

    response = api.client.post(PATH, json=report(), headers=api.auth("agent"))

    body = _problem(response, 503)
    assert "may have been stored" in body["detail"]
    assert "same Idempotency-Key" in body["detail"]
    assert "was not stored" not in body["detail"]


def test_a_write_stuck_on_a_hung_disk_gets_check_ins_refused_at_once_not_held(
    api: Api,
) -> None:
    """SQLite's calls on a hung disk never return and nothing can break them: past
    STUCK_AFTER, check-ins are answered 503 "not stored" at once instead of waiting, and
    taken again once the stuck write ends."""
    store_writer = api.runtime.store.writer
    entered, release = threading.Event(), threading.Event()

    def hung_checkpoint() -> None:
        entered.set()
        release.wait(30)

    store_writer.every(0.05, hung_checkpoint)
    try:
        assert entered.wait(10), "the writer is in its periodic work, as on a hung disk"
        store_writer.check_stuck(time.monotonic() + writer.STUCK_AFTER + 1)

        refused = api.client.post(PATH, json=report(), headers=api.auth("agent"))

        detail = _problem(refused, 503)["detail"]
        assert detail.startswith("the completion was not stored: ")
        assert "a write to the database has not ended for 31 s (a hung disk" in detail
        ready = api.client.get("/readyz")
        assert ready.status_code == 503 and "has not ended for" in ready.text
    finally:
        release.set()
    taken = api.client.post(PATH, json=report(), headers=api.auth("agent"))
    assert taken.status_code == 202, taken.text
    assert api.runtime.store.unready() is None


def test_thousands_of_unknown_fields_get_a_short_answer_naming_the_first(
    nothing_stored: Api,
) -> None:
    """A body within the size limit of 7,000 unknown keys: the answer lists the first
    problems and counts the rest (it was 538 KB, and its suggestions held the event loop
    for most of a second)."""
    body = {**report(), **{f"{index:x}": 0 for index in range(7_000)}}
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}
    content = json.dumps(body, separators=(",", ":"))
    assert len(content) < 64 * 1024

    response = nothing_stored.client.post(PATH, content=content, headers=headers)

    problem = _problem(response, 422)
    assert len(response.content) < 4_000
    assert problem["detail"].startswith("7000 invalid fields: 0: unknown field")
    assert len(problem["errors"]) == 21
    assert problem["errors"][-1] == {"field": "body", "message": "and 6980 more"}


@pytest.mark.parametrize("as_text", [False, True], ids=["number", "string"])
def test_an_id_of_thousands_of_digits_is_refused_naming_the_field(
    nothing_stored: Api, as_text: bool
) -> None:
    digits = "9" * 5_000
    value = f'"{digits}"' if as_text else digits
    content = json.dumps(report()).replace('"certificate_id": null', f'"certificate_id": {value}')
    assert digits in content
    headers = {**nothing_stored.auth("agent"), "Content-Type": "application/json"}

    response = nothing_stored.client.post(PATH, content=content, headers=headers)

    problem = _problem(response, 422)
    [error] = problem["errors"]
    assert error["field"] == "certificate_id"
    assert error["message"].startswith("expected an integer of at most 9223372036854775807")
    assert "5000 digits" in error["message"]
    assert "set_int_max_str_digits" not in response.text and "9999999999" not in response.text


@pytest.mark.parametrize(
    ("path", "method"), [(PATH, "POST"), ("/api/v1/handlers", "GET")], ids=["check-in", "operator"]
)
@pytest.mark.parametrize("header", ["Authorization", "Idempotency-Key"])
def test_a_header_that_says_one_thing_given_twice_is_refused_everywhere_alike(
    api: Api, path: str, method: str, header: str
) -> None:
    """Which of two tokens (or keys) counts must not depend on the route, nor on a proxy
    that joins them: the request is refused, naming the header."""
    admin, agent = api.auth("admin")["Authorization"], api.auth("agent")["Authorization"]
    given = [("Authorization", agent), ("Content-Type", "application/json")]
    given += (
        [("Authorization", admin)]
        if header == "Authorization"
        else [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    )
    content = json.dumps(report()).encode()

    response = api.client.request(method, path, content=content, headers=given)

    problem = _problem(response, 400)
    assert problem["detail"] == f"the {header.lower()} header is given more than once; give it once"
    stored = api.client.get("/api/v1/job-completions", headers=api.auth("admin"))
    assert stored.json()["items"] == [], "nothing stored"
