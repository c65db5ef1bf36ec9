"""Input no database can take, and requests the API does not serve: clear 4xx answers,
never a 5xx, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest
from support.app import Api
from support.reports import report

PATH = "/api/v1/job-completions"
BOTH = pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


@BOTH
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/job-completions?client_machine=%00"),
        ("GET", "/api/v1/job-completions?job_type=a%00b"),
        ("GET", "/api/v1/job-completions?before=%00"),
        ("GET", "/api/v1/handler-runs?handler=%00"),
        ("GET", "/api/v1/job-completions/%00"),
        ("POST", "/api/v1/handler-runs/%00/replay"),
        ("POST", "/api/v1/handlers/%00/replay-dead"),
        ("GET", "/ui/completions?machine=%00"),
        ("GET", "/ui/runs?handler=%00"),
        ("GET", "/ui/completions/%00"),
        ("GET", "/api/v1/job-completions?client_machine=%ED%A0%80"),
        ("GET", "/api/v1/job-completions/%ff"),
        ("POST", "/api/v1/handlers/%ff/replay-dead"),
        ("POST", "/api/v1/handler-runs/%ed%a0%80/replay"),
    ],
)
def test_a_nul_or_broken_text_in_a_parameter_is_a_4xx_naming_it(
    api: Api, method: str, path: str
) -> None:
    response = api.client.request(method, path, headers=api.auth("admin"))

    assert 400 <= response.status_code < 500, response.text
    body = _problem(response, response.status_code)
    assert any(word in body["detail"] for word in ("NUL", "Unicode", "UTF-8")), body


FORM = ("content-type", "application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("method", "path", "repeated", "body"),
    [
        ("GET", "/ui/completions?machine=%00", False, b""),
        ("GET", "/ui/completions/%ff", False, b""),
        ("GET", "/ui/runs", True, b""),
        ("POST", "/ui/signin", False, b"token=" + b"t" * 70_000),
    ],
)
def test_a_refusal_before_any_route_is_never_framed_sniffed_or_cached(
    api: Api, method: str, path: str, repeated: bool, body: bytes
) -> None:
    """The guard answers the dashboard's addresses too: with the headers its pages carry."""
    (authorization,) = api.auth("admin").items()
    headers = [authorization, authorization] if repeated else [authorization, FORM]
    response = api.client.request(method, path, headers=headers, content=body or None)

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_deeply_nested_json_is_a_400(api: Api) -> None:
    body = b'{"a":' * 5000 + b"1" + b"}" * 5000

    response = api.client.post(
        PATH, content=body, headers={**api.auth("agent"), "content-type": "application/json"}
    )

    assert "nested too deeply" in _problem(response, 400)["detail"]
    assert api.stored() == []


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/vnd.jobhooks+json", True),
        ("text/notjsonatall", False),
        ("application/jsonp", False),
        ("text/plain; note=json", False),
        ("application/+json", False),
        (None, False),
    ],
)
def test_only_a_json_media_type_is_a_check_in(
    api: Api, content_type: str | None, accepted: bool
) -> None:
    import json

    headers = api.auth("agent")
    if content_type is not None:
        headers["content-type"] = content_type
    response = api.client.post(PATH, content=json.dumps(report()), headers=headers)

    if accepted:
        assert response.status_code == 202, response.text
    else:
        assert "application/json" in _problem(response, 415)["detail"]


def test_another_method_on_the_check_in_path_lists_the_ones_it_takes(api: Api) -> None:
    response = api.client.request("OPTIONS", PATH, headers=api.auth("agent"))

    _problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "PATCH"])
def test_a_method_the_api_does_not_serve_is_a_405_whatever_its_query_holds(
    api: Api, method: str
) -> None:
    response = api.client.request(
        method, "/api/v1/handler-runs?status=dead%00", headers=api.auth("admin")
    )

    _problem(response, 405)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "DELETE"])
def test_a_chunked_body_is_counted_on_every_method(api: Api, method: str) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 4096  # 400 KiB, no Content-Length

    response = api.client.request(
        method, "/api/v1/handlers", content=chunks(), headers=api.auth("admin")
    )

    assert response.status_code == 413, response.text


def test_the_interactive_api_pages_that_load_from_a_cdn_are_not_served(api: Api) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert api.client.get(path).status_code == 404
    document = api.client.get("/openapi.json").text
    assert "cdn." not in document


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/api/v1/handlers", "admin"),
        (PATH, "admin"),
        ("/ui/login", None),
    ],
)
def test_a_head_request_is_answered_as_its_get_without_the_body(
    api: Api, path: str, role: str | None
) -> None:
    """Load balancers and monitors probe with HEAD: the same status and headers as a GET,
    its length included, and no body."""
    headers = api.auth(role) if role else {}
    got = api.client.get(path, headers=headers)
    head = api.client.head(path, headers=headers)

    assert head.status_code == got.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path not in ("/metrics", "/readyz"):  # their figures move between two requests
        assert head.headers["content-length"] == str(len(got.content))
    else:
        assert int(head.headers["content-length"]) > 0


def test_a_head_request_on_a_route_that_only_takes_posts_is_a_405(api: Api) -> None:
    response = api.client.head("/api/v1/handlers/x/replay-dead", headers=api.auth("admin"))

    assert response.status_code == 405
    assert response.content == b""


@pytest.mark.parametrize(
    ("path", "role"), [("/healthz", None), ("/api/v1/handlers", "admin"), ("/ui/login", None)]
)
def test_a_405_on_a_route_read_with_get_lists_head_too(
    api: Api, path: str, role: str | None
) -> None:
    """HEAD is answered wherever GET is, so the methods a 405 lists say so."""
    response = api.client.delete(path, headers=api.auth(role) if role else {})

    assert response.status_code == 405
    assert "HEAD" in response.headers["allow"].replace(" ", "").split(","), response.headers
