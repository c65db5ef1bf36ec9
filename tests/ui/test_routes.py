"""The dashboard's routes in this process, on an API-only runtime (as ``serve --no-worker``):
sessions, redirects, CSRF, roles and headers, without a browser."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.app import TestClient
from support.reports import AGENT_A, report
from support.server import write_config
from support.tokens import database, make_token, revoke

from jobhooks.registry import load_for_serving
from jobhooks.service.runtime import Runtime
from jobhooks.ui.session import LOGIN_COOKIE, SESSION_COOKIE
from jobhooks.web import create_app

PAGES = ["/ui/", "/ui/completions", "/ui/runs", "/ui/handlers", "/ui/job-types", "/ui/agents"]


@dataclass
class Ui:
    client: TestClient
    runtime: Runtime
    tokens: dict[str, str]

    def sign_in(self, role: str) -> str:
        """Sign in with the ``role`` token; returns the session's CSRF token."""
        form = self.client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = self.client.post(
            "/ui/login", data={"csrf": csrf.group(1), "token": self.tokens[role], "next": "/ui/"}
        )
        assert answer.status_code == 303, answer.text
        overview = self.client.get("/ui/")
        found = re.search(r'name="csrf" value="([^"]+)"', overview.text)
        assert found is not None
        return found.group(1)


LOG = """
[[handlers]]
name = "log"
type = "log"
job_types = "*"
"""


@pytest.fixture
def handlers() -> str:
    """The registrations of the ``ui`` fixture's configuration."""
    return LOG


@pytest.fixture
def ui(tmp_path: Path, handlers: str) -> Iterator[Ui]:
    config = write_config(tmp_path, handlers)
    runtime = Runtime(load_for_serving(config), config, with_worker=False)
    store = runtime.store
    tokens = {
        "admin": make_token(store, "admin"),
        "viewer": make_token(store, "viewer"),
        "agent": make_token(store, "agent", AGENT_A),
    }
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        yield Ui(client, runtime, tokens)


def _completion(ui: Ui) -> str:
    answer = ui.client.post(
        "/api/v1/job-completions",
        json=report(),
        headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
    )
    assert answer.status_code == 202, answer.text
    completion_id: str = answer.json()["id"]
    return completion_id


def test_an_api_only_node_serves_the_sign_in_page_with_its_headers(ui: Ui) -> None:
    page = ui.client.get("/ui/login")
    assert page.status_code == 200
    assert 'name="token"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"]
    assert LOGIN_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert ui.client.get("/ui/static/app.js").status_code == 200
    assert ui.client.get("/ui").headers["location"] == "/ui/"


def test_without_a_session_every_page_and_form_redirects_to_sign_in(ui: Ui) -> None:
    completion_id = _completion(ui)
    for path in [*PAGES, f"/ui/completions/{completion_id}", "/ui/overview/live"]:
        answer = ui.client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login?next="), path
    for path in ["/ui/runs/x/replay", "/ui/handlers/log/replay-dead", "/ui/logout"]:
        answer = ui.client.post(path, data={"csrf": "x"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login")


def test_the_session_cookie_is_http_only_strict_and_expires(ui: Ui) -> None:
    form = ui.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = ui.client.post("/ui/login", data={"csrf": csrf.group(1), "token": ui.tokens["admin"]})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Path=/ui" in cookie and "Secure" not in cookie  # plain HTTP here
    assert ui.tokens["admin"] not in cookie


def test_sign_in_needs_the_forms_csrf_token(ui: Ui) -> None:
    ui.client.get("/ui/login")
    answer = ui.client.post("/ui/login", data={"token": ui.tokens["admin"]})
    assert answer.status_code == 403
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    ("role", "status", "said"),
    [
        ("", 400, "Paste a token"),
        ("jh_0123456789ab_not-a-token-of-ours", 403, "unknown or revoked"),
        ("agent", 403, "That is an agent token"),
    ],
)
def test_a_refused_sign_in_is_a_4xx_that_says_why(
    ui: Ui, role: str, status: int, said: str
) -> None:
    """A proxy's access log (and fail2ban reading it) tells a refused sign-in from one that
    worked only by its status."""
    form = ui.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    token = ui.tokens.get(role, role)

    answer = ui.client.post("/ui/login", data={"csrf": csrf.group(1), "token": token})

    assert answer.status_code == status
    assert said in answer.text and 'name="token"' in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert ui.client.get("/ui/agents").status_code == 303


def test_the_next_page_after_sign_in_stays_on_the_dashboard(ui: Ui) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/v1/handlers"):
        ui.client.cookies.clear()
        form = ui.client.get("/ui/login", params={"next": target})
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = ui.client.post(
            "/ui/login", data={"csrf": csrf.group(1), "token": ui.tokens["viewer"], "next": target}
        )
        assert answer.headers["location"] == "/ui/"


def test_a_post_without_its_csrf_token_or_from_another_site_is_refused(ui: Ui) -> None:
    csrf = ui.sign_in("admin")
    assert ui.client.post("/ui/logout", data={}).status_code == 403
    assert ui.client.post("/ui/logout", data={"csrf": csrf + "x"}).status_code == 403
    foreign = ui.client.post(
        "/ui/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert ui.client.get("/ui/agents").status_code == 200
    assert ui.client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert ui.client.get("/ui/agents").status_code == 303


@pytest.mark.parametrize("path", ["/ui/login", "/ui/logout"])
def test_a_form_with_more_fields_than_any_is_a_413_before_and_after_sign_in(
    ui: Ui, path: str
) -> None:
    if path == "/ui/logout":
        ui.sign_in("admin")
    fields = {f"a{number}": "1" for number in range(51)}

    answer = ui.client.post(path, data=fields)

    assert answer.status_code == 413, answer.text
    assert "too many fields" in answer.text


def test_a_form_refused_behind_a_proxy_that_changed_the_host_says_what_to_do(ui: Ui) -> None:
    csrf = ui.sign_in("admin")
    answer = ui.client.post(
        "/ui/logout",
        data={"csrf": csrf},
        headers={"Origin": "https://jobhooks.example.com", "Host": "127.0.0.1:8080"},
    )
    assert answer.status_code == 403
    assert "proxy_set_header Host $host" in answer.text


def test_signing_in_through_a_proxy_on_another_port_that_passes_host_works(ui: Ui) -> None:
    """nginx ``listen 8443 ssl`` with ``proxy_set_header Host $host`` (as the refusal and the
    README advise) passes the host name without the port the browser's Origin carries."""
    browser = {"Origin": "https://jobhooks.example.com:8443", "Host": "jobhooks.example.com"}
    form = ui.client.get("/ui/login", headers=browser)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None

    signed_in = ui.client.post(
        "/ui/login", data={"csrf": csrf.group(1), "token": ui.tokens["admin"]}, headers=browser
    )

    assert signed_in.status_code == 303, signed_in.text
    assert ui.client.get("/ui/agents", headers=browser).status_code == 200
    elsewhere = {**browser, "Origin": "https://evil.example:8443"}
    page = ui.client.get("/ui/", headers=browser).text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    refused = ui.client.post("/ui/logout", data={"csrf": found.group(1)}, headers=elsewhere)
    assert refused.status_code == 403
    assert ui.client.get("/ui/agents", headers=browser).status_code == 200


def test_a_viewer_cannot_replay_even_with_a_good_csrf_token(ui: Ui) -> None:
    completion_id = _completion(ui)
    with database(ui.runtime.store) as engine, engine.connect() as connection:
        run_id = connection.exec_driver_sql(
            "SELECT id FROM handler_runs WHERE completion_id = ?", (completion_id,)
        ).scalar_one()
    csrf = ui.sign_in("viewer")
    answer = ui.client.post(f"/ui/runs/{run_id}/replay", data={"csrf": csrf})
    assert answer.status_code == 403
    assert "viewer" in answer.text
    assert ui.client.post("/ui/handlers/log/replay-dead", data={"csrf": csrf}).status_code == 403


def test_an_admin_replays_every_dead_run_of_a_handler_after_confirming(ui: Ui) -> None:
    completion_id = _completion(ui)
    with database(ui.runtime.store) as engine, engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE handler_runs SET status = 'dead', last_error = 'boom' WHERE completion_id = ?",
            (completion_id,),
        )
    csrf = ui.sign_in("admin")
    confirm = ui.client.get("/ui/handlers/log/replay-dead")
    assert confirm.status_code == 200
    assert "1</strong> dead run" in confirm.text
    done = ui.client.post("/ui/handlers/log/replay-dead", data={"csrf": csrf})
    assert done.status_code == 303
    assert "notice=replayed-dead" in done.headers["location"]
    runs = ui.client.get(done.headers["location"])
    assert "dead runs are pending again" in runs.text
    assert "pending" in runs.text


def test_a_revoked_tokens_session_stops_working(ui: Ui) -> None:
    ui.sign_in("viewer")
    assert ui.client.get("/ui/agents").status_code == 200
    assert revoke(ui.runtime.store, ui.tokens["viewer"])
    ui.runtime.tokens.forget()  # the cache would otherwise keep it for up to 10 s
    answer = ui.client.get("/ui/agents")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login")


def test_an_unknown_completion_is_a_404_page(ui: Ui) -> None:
    ui.sign_in("viewer")
    answer = ui.client.get("/ui/completions/0190f000-0000-7000-8000-000000000000")
    assert answer.status_code == 404
    assert "There is no completion" in answer.text


def test_a_completion_is_found_by_its_id_in_capitals(ui: Ui) -> None:
    """As Keyfactor Command writes GUIDs (the page was a 404)."""
    completion_id = _completion(ui)
    ui.sign_in("viewer")
    answer = ui.client.get(f"/ui/completions/{completion_id.upper()}")
    assert answer.status_code == 200, answer.text
    assert completion_id in answer.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ui/no-such-page", 404),
        ("GET", "/ui/static/no-such.js", 404),
        ("PUT", "/ui/", 405),
        ("DELETE", "/ui/login", 405),
    ],
)
def test_an_address_the_dashboard_does_not_answer_is_a_page_with_its_headers(
    ui: Ui, method: str, path: str, status: int
) -> None:
    """Not the API's JSON: a person sees a page, and the page is framed by nobody."""
    answer = ui.client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert path in answer.text and "Back to the overview" in answer.text
    if status == 405:
        assert "HEAD" in answer.headers["allow"] and method not in answer.headers["allow"]
    api = ui.client.get("/api/v1/no-such-thing")
    assert (api.status_code, api.headers["content-type"]) == (404, "application/problem+json")


def test_the_dashboards_assets_carry_its_headers_and_are_cached(ui: Ui) -> None:
    asset = ui.client.get("/ui/static/app.js")
    assert asset.status_code == 200
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in asset.headers["content-security-policy"]
    assert asset.headers["cache-control"] == "public, max-age=3600"


def test_filters_that_are_not_valid_say_so(ui: Ui) -> None:
    ui.sign_in("viewer")
    answer = ui.client.get("/ui/completions", params={"agent": "nope", "result": "Fabulous"})
    assert answer.status_code == 200
    assert "agent: not a GUID" in answer.text
    assert "unknown value" in answer.text


def test_the_servers_address_leads_to_the_dashboard(ui: Ui) -> None:
    answer = ui.client.get("/", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/ui/"
    landed = ui.client.get("/", follow_redirects=True)
    assert landed.url.path == "/ui/login", "then to sign-in, without a session"


def test_the_dashboard_is_not_in_the_openapi_document(ui: Ui) -> None:
    paths = ui.client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_every_page_renders_its_less_common_parts(ui: Ui) -> None:
    completion_id = _completion(ui)
    with database(ui.runtime.store) as engine, engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE handler_runs SET handler = 'retired', status = 'dead', "
            "last_error = 'gone' WHERE completion_id = ?",
            (completion_id,),
        )
    ui.sign_in("admin")
    handlers = ui.client.get("/ui/handlers")
    assert "No longer registered" in handlers.text and "retired" in handlers.text
    for path in (
        "/ui/?range=1h",
        "/ui/?range=7d",
        "/ui/?range=bogus",
        "/ui/overview/live?range=7d",
        "/ui/runs?status=dead&handler=retired",
        "/ui/runs?status=nonsense",
        "/ui/runs?handler=nobody",
        f"/ui/completions?before={completion_id}",
        "/ui/completions?since=2026-01-01T00:00&until=2036-01-01T00:00&result=Failure",
        "/ui/completions?since=yesterday",
        "/ui/handlers/retired/replay-dead",
        "/ui/handlers/nobody/replay-dead",
    ):
        page = ui.client.get(path)
        assert page.status_code == 200, (path, page.text[-2000:])
    assert "retired" in ui.client.get("/ui/runs?status=dead").text
    assert "expected a date and time" in ui.client.get("/ui/completions?since=yesterday").text
    assert "Replay 1 dead run" in ui.client.get("/ui/handlers/retired/replay-dead").text
    assert "has no dead runs" in ui.client.get("/ui/handlers/nobody/replay-dead").text


def test_job_types_named_only_in_the_configuration_are_listed(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        [job_types]
        "Only named" = "0a1e5c2d-0000-4000-8000-00000000aaaa"

        [[handlers]]
        name = "log"
        type = "log"
        job_types = ["Only named"]
        """,
    )
    runtime = Runtime(load_for_serving(config), config, with_worker=False)
    admin = make_token(runtime.store, "admin")
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        ui = Ui(client, runtime, {"admin": admin})
        ui.sign_in("admin")
        page = ui.client.get("/ui/job-types")
        assert "Only named" in page.text and "named in the configuration" in page.text
        handlers = ui.client.get("/ui/handlers")
        assert "Only named" in handlers.text
        assert "0a1e5c2d-0000-4000-8000-00000000aaaa" in handlers.text


def test_the_session_cookie_is_secure_over_https(ui: Ui) -> None:
    # A second client on the running app, without running its lifespan again.
    client = TestClient(ui.client.app, base_url="https://testserver", follow_redirects=False)
    form = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    assert "Secure" in form.headers["set-cookie"]
    answer = client.post("/ui/login", data={"csrf": csrf.group(1), "token": ui.tokens["admin"]})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert "Secure" in cookie


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(ui: Ui) -> None:
    csrf = ui.sign_in("admin")
    saved = ui.client.cookies.get(SESSION_COOKIE)
    assert saved

    assert ui.client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    ui.client.cookies.set(SESSION_COOKIE, saved, path="/ui")
    replayed = ui.client.get("/ui/runs")

    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/ui/login")


def test_revoking_a_token_ends_its_sessions_at_once(ui: Ui) -> None:
    ui.sign_in("viewer")
    assert ui.client.get("/ui/runs").status_code == 200
    viewer_id = ui.tokens["viewer"].split("_")[1]
    assert revoke(ui.runtime.store, viewer_id)

    # No waiting for a cache: the session's row ended with the token.
    assert ui.client.get("/ui/runs").status_code == 303


def test_the_api_reference_is_a_dashboard_page_served_from_this_server(ui: Ui) -> None:
    assert ui.client.get("/ui/api").status_code == 303, "it needs a session"
    ui.sign_in("viewer")

    page = ui.client.get("/ui/api")

    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "POST /api/v1/job-completions" in page.text
    assert "CompletionReport" in page.text and "job_result" in page.text
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', page.text)
    assert external == [], "nothing is loaded from another host"


PAGE = (
    LOG
    + """
[[handlers]]
name = "page-on-call"
type = "log"
job_types = "*"
when = ["failure-streak", "recovered"]
"""
)


@pytest.mark.parametrize("handlers", [PAGE])
def test_a_completion_page_says_why_each_run_exists_and_who_was_not_sent_and_why(
    ui: Ui,
) -> None:
    ui.sign_in("viewer")
    job = "0b4b411a-4b26-4492-a575-a10adb43a08a"
    ids = []
    for _ in range(3):
        answer = ui.client.post(
            "/api/v1/job-completions",
            json=report(job_id=job, current_retry_count=None),
            headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
        )
        ids.append(answer.json()["id"])

    second = ui.client.get(f"/ui/completions/{ids[1]}").text
    third = ui.client.get(f"/ui/completions/{ids[2]}").text
    runs = ui.client.get("/ui/runs?handler=page-on-call").text

    assert "Not sent" in second
    assert "page-on-call</strong>: not sent: 2nd consecutive failure, fires at 3" in second
    assert "Not sent" not in third
    assert "failure-streak</span> 3rd consecutive failure of Inventory job" in third
    assert "failure-streak" in runs
    handlers_page = ui.client.get("/ui/handlers").text
    assert "failure-streak (at 3), recovered" in handlers_page


QUARANTINED = (
    LOG
    + """
[[handlers]]
name = "pager"
type = "notify"
job_types = "*"
properties = { urls = ["env:JOBHOOKS_TEST_UNSET_PAGER"] }
"""
)


DIGEST = (
    LOG
    + """
[[handlers]]
name = "machine-down"
type = "log"
job_types = "*"
group_by = ["client_machine"]
group_wait = "1h"
"""
)


@pytest.mark.parametrize("handlers", [QUARANTINED])
def test_every_page_carries_a_banner_while_a_registration_is_quarantined(ui: Ui) -> None:
    assert "with problems" not in ui.client.get("/ui/login").text, "not before signing in"
    ui.sign_in("viewer")
    for path in PAGES:
        page = ui.client.get(path)
        assert page.status_code == 200, path
        banner = re.search(r'<section class="quarantine".*?</section>', page.text, re.S)
        assert banner is not None, path
        text = banner.group(0)
        assert "1 registration with problems" in text
        assert (
            "<strong>pager</strong>: quarantined: it does not run, and its completions are held"
            in text
        )
        assert "environment variable JOBHOOKS_TEST_UNSET_PAGER is not set" in text


@pytest.mark.parametrize("handlers", [DIGEST])
def test_a_digest_is_shown_collecting_with_its_completions_linked_from_each(ui: Ui) -> None:
    ui.sign_in("viewer")
    ids = []
    for _ in range(3):
        answer = ui.client.post(
            "/api/v1/job-completions",
            json=report(client_machine="store07.example.com"),
            headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
        )
        ids.append(answer.json()["id"])

    runs = ui.client.get("/ui/runs?handler=machine-down").text
    assert "status-collecting" in runs
    assert "digest of 3</a>" in runs
    assert re.search(r"until <time datetime=\"\d{4}-\d\d-\d\dT", runs)
    for own in ids:
        page = ui.client.get(f"/ui/completions/{own}").text
        assert "Digest of 3 completions</strong>, collecting until" in page
        assert f'<code>{own}</code> <span class="muted">(this completion)</span>' in page
        for other in ids:
            if other != own:
                assert f'<a href="/ui/completions/{other}"><code>{other}</code></a>' in page


@pytest.mark.parametrize("handlers", [DIGEST])
def test_a_digests_members_are_listed_with_what_each_was(ui: Ui) -> None:
    """Forty ids say nothing: each member shows its result, job type and machine."""
    ui.sign_in("viewer")
    sent = [
        report(client_machine="store07.example.com", job_type=kind, job_result=result)
        for kind, result in (("PEMInventory", "Failure"), ("SSL Monitoring", "Warning"))
    ]
    ids = []
    for body in sent:
        answer = ui.client.post(
            "/api/v1/job-completions",
            json=body,
            headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])

    page = ui.client.get(f"/ui/completions/{ids[0]}").text

    members = page[page.index('class="digest-members"') :]
    members = members[: members.index("</ol>")]
    assert re.search(
        r"result-failure\">Failure</span> PEMInventory on store07\.example\.com", members
    ), members
    assert re.search(
        r"result-warning\">Warning</span> SSL Monitoring on store07\.example\.com", members
    ), members


FAILURE_DIGEST = DIGEST.replace(
    'group_by = ["client_machine"]', 'when = "failure"\ngroup_by = ["client_machine"]'
)


def _digest_run(completion: dict[str, Any]) -> dict[str, Any]:
    (run,) = (run for run in completion["handler_runs"] if run["handler"] == "machine-down")
    found: dict[str, Any] = run
    return found


@pytest.mark.parametrize("handlers", [FAILURE_DIGEST])
def test_each_member_of_a_digest_says_why_it_joined_as_its_check_in_did(ui: Ui) -> None:
    """The digest's run opened on the first failure; the second, of another job, joined it
    for its own failure, which its page and the API say, as its check-in's answer did."""
    ui.sign_in("viewer")
    answers = []
    for _ in range(2):
        answer = ui.client.post(
            "/api/v1/job-completions",
            json=report(client_machine="store07.example.com", job_result="Failure"),
            headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
        )
        assert answer.status_code == 202, answer.text
        answers.append(answer.json())
    first, second = (_digest_run(a) for a in answers)
    assert first["id"] == second["id"], "one digest"
    assert first["trigger"]["reason"] != second["trigger"]["reason"], "two jobs"

    for answer in answers:
        run = _digest_run(answer)
        own = run["trigger"]["reason"]
        detail = ui.client.get(
            f"/api/v1/job-completions/{answer['id']}",
            headers={"Authorization": f"Bearer {ui.tokens['admin']}"},
        ).json()
        assert _digest_run(detail)["trigger"] == run["trigger"]
        page = ui.client.get(f"/ui/completions/{answer['id']}").text
        assert html.escape(own, quote=False) in page


@pytest.mark.parametrize("handlers", [DIGEST])
def test_replaying_a_digest_still_collecting_says_it_is_busy(ui: Ui) -> None:
    """Nothing is replayed while a digest collects: the page must not say it was."""
    answer = ui.client.post(
        "/api/v1/job-completions",
        json=report(client_machine="store08.example.com"),
        headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
    )
    (run,) = [r for r in answer.json()["handler_runs"] if r["handler"] == "machine-down"]
    assert run["status"] == "collecting"
    csrf = ui.sign_in("admin")

    replayed = ui.client.post(f"/ui/runs/{run['id']}/replay", data={"csrf": csrf})

    assert replayed.status_code == 303
    assert replayed.headers["location"].endswith("notice=busy")


def test_characters_that_would_reorder_the_page_are_shown_as_escapes(ui: Ui) -> None:
    """A right-to-left override in a report would show the rest of its line reversed."""
    answer = ui.client.post(
        "/api/v1/job-completions",
        json=report(job_type="\u202eyrotnevnI", client_machine="orch\x9b01"),
        headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
    )
    ui.sign_in("viewer")

    page = ui.client.get(f"/ui/completions/{answer.json()['id']}").text

    assert "\u202e" not in page and "\x9b" not in page
    assert "\\u202eyrotnevnI" in page and "orch\\x9b01" in page


def test_a_machine_name_with_an_invisible_character_does_not_pass_for_another(ui: Ui) -> None:
    """An agent reporting as ``orch\\u200b01`` (a zero width space) would be listed as a
    second ``orch01`` on the agents page, indistinguishable from the real one."""
    ui.client.post(
        "/api/v1/job-completions",
        json=report(client_machine="orch\u200b01.example.com", username="EX\u2060AMPLE\\svc"),
        headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
    )
    ui.sign_in("viewer")

    for path in ("/ui/agents", "/ui/completions"):
        page = ui.client.get(path).text
        assert "\u200b" not in page and "\u2060" not in page, path
        assert "orch\\u200b01.example.com" in page, path
    assert "EX\\u2060AMPLE" in ui.client.get("/ui/agents").text


def test_a_refused_sign_in_leaves_a_trace_in_the_log(
    ui: Ui, caplog: pytest.LogCaptureFixture
) -> None:
    form = ui.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None

    with caplog.at_level(logging.WARNING, "jobhooks.ui"):
        ui.client.post("/ui/login", data={"csrf": csrf.group(1), "token": "jh_guess_guess"})

    assert "dashboard sign-in refused from" in caplog.text
    assert "jh_guess_guess" not in caplog.text


def test_a_machine_filter_with_a_mark_shown_as_an_escape_is_kept_as_it_is_in_its_field(
    ui: Ui,
) -> None:
    """The page shows a left-to-right mark in a machine's name as ``\\u200e``; the filter's
    field keeps the name itself, so filtering again (by result, say) still finds it."""
    machine = "orch\u200e01.example.com"
    ui.client.post(
        "/api/v1/job-completions",
        json=report(client_machine=machine),
        headers={"Authorization": f"Bearer {ui.tokens['agent']}"},
    )
    ui.sign_in("viewer")
    listed = ui.client.get("/ui/completions", params={"machine": machine})
    assert "orch\\u200e01.example.com</td>" in listed.text
    field = re.search(r'name="machine" value="([^"]*)"', listed.text)
    assert field is not None

    again = ui.client.get(
        "/ui/completions", params={"machine": html.unescape(field.group(1)), "result": "Failure"}
    )

    assert field.group(1) == machine
    assert "orch\\u200e01.example.com</td>" in again.text
